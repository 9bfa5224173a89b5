"""The store sync of a job: inputs fetched, checkpoints and the feature cache mirrored.

Inputs come from the artifact store (used in place when the store is local); checkpoints
sync to ``checkpoints/{job_id}/`` so another machine can resume; the teacher feature cache
lives in ``cache/features/`` so the next job skips extraction. No database here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.storage import ArtifactStore


def local_dir(store: ArtifactStore, path: str, scratch: Path) -> Path:
    """A local directory holding the store's ``path``: in place when local, else a copy."""
    local = store.local_path(path)
    if local is not None:
        return local
    return store.get_dir(path, scratch / path.replace("/", "_"))


def local_file(store: ArtifactStore, path: str, scratch: Path) -> Path:
    local = store.local_path(path)
    if local is not None:
        return local
    target = scratch / path.replace("/", "_")
    with store.open(path, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


class CheckpointSync:
    """Mirrors the job's checkpoint directory to ``checkpoints/{job_id}/`` in the store."""

    def __init__(self, store: ArtifactStore, job_id: str, local_dir: Path) -> None:
        self.store, self.prefix, self.local_dir = store, f"checkpoints/{job_id}", local_dir

    def download(self) -> list[str]:
        """Fetch the checkpoints an earlier attempt left (possibly on another machine)."""
        names = self.store.list_files(self.prefix)
        if names:
            self.store.get_dir(self.prefix, self.local_dir)
        return names

    def __call__(self, path: str) -> None:
        """``on_checkpoint``: publish the file so a copy is never half written."""
        source = Path(path)
        local = self.store.local_path(f"{self.prefix}/{source.name}")
        if local is None:  # object stores publish a PUT whole or not at all
            self.store.put_file(source, f"{self.prefix}/{source.name}")
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, local)

    def delete(self) -> None:
        self.store.delete(self.prefix)


class FeatureCacheSync:
    """Teacher features cached in ``cache/features/``: in place when local, mirrored when remote."""

    PREFIX = "cache/features"

    def __init__(self, store: ArtifactStore, scratch: Path) -> None:
        self.store = store
        local = store.local_path(self.PREFIX)
        self.remote = local is None
        self.dir = scratch / "feature-cache" if local is None else local
        self._before: set[str] = set()

    def download(self) -> Path:
        if self.remote:
            for rel in self.store.list_files(self.PREFIX):
                if not rel.split("/")[0].startswith(".tmp-"):
                    target = self.dir / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with self.store.open(f"{self.PREFIX}/{rel}", "rb") as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            self._before = {p.name for p in self.dir.iterdir()} if self.dir.exists() else set()
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir

    def upload(self) -> None:
        """Publish the entries this job created (complete ones only: their names carry no ``.tmp-``)."""
        if not self.remote or not self.dir.exists():
            return
        for entry in self.dir.iterdir():
            if entry.is_dir() and entry.name not in self._before and not entry.name.startswith(".tmp-"):
                self.store.put_dir(entry, f"{self.PREFIX}/{entry.name}")


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
