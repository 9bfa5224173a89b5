"""The store sync of a job: inputs fetched, checkpoints and the feature cache mirrored.

Inputs come from the artifact store (used in place when the store is local); checkpoints
sync to ``checkpoints/{job_id}/{claim_token}/`` so another machine can resume; the teacher
feature cache lives in ``cache/features/{tenant}/`` so the next job skips extraction. No SQL here:
the checkpoint promotion (a fenced UPDATE) is handed in by the runner.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from app.storage import ArtifactStore, StorePaths
from worker.claim import ClaimLost

# (folder) -> (this claim still holds the job and now points at ``folder``, the folder it replaced)
Promote = Callable[[str], tuple[bool, str | None]]


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
    """Mirrors the job's checkpoint directory to a store folder of this delivery's own.

    Two deliveries of one job (a worker cut off past the heartbeat timeout, and the one that
    took its place) must never both write the checkpoints a resume reads. So each delivery
    writes ``checkpoints/{job_id}/{claim_token}/`` only, and after each checkpoint ``promote``
    (a fenced UPDATE of the job's ``checkpoint_uri``) makes that folder the one to resume
    from; a delivery whose promotion fails removes its folder and stops (``ClaimLost``). The
    winner removes the folder it replaced. Without a token (tests, ``lelp distill``-like
    callers) the files go straight to ``checkpoints/{job_id}/``, the layout before claims.
    """

    def __init__(self, store: ArtifactStore, job_id: str, local_dir: Path, *, token: str | None = None,
                 current: str | None = None, promote: Promote | None = None) -> None:
        self.store, self.job_id, self.local_dir = store, job_id, local_dir
        self.prefix = StorePaths.checkpoints(job_id)
        self.folder = StorePaths.checkpoint_delivery(job_id, token) if token else self.prefix
        self.current, self.promote = current, promote
        self._synced: dict[str, int] = {}  # file name -> mtime_ns already in ``folder``

    def download(self) -> list[str]:
        """Fetch the promoted checkpoints of an earlier delivery (possibly on another machine).

        A job checkpointed before claims existed keeps its files directly in ``checkpoints/{job_id}/``.
        """
        if self.current:
            names = self.store.list_files(self.current)
            if names:
                self.store.get_dir(self.current, self.local_dir)
            return names
        names = [n for n in self.store.list_files(self.prefix) if "/" not in n]
        for name in names:
            self.local_dir.mkdir(parents=True, exist_ok=True)
            with self.store.open(f"{self.prefix}/{name}", "rb") as src, (self.local_dir / name).open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return names

    def __call__(self, path: str) -> None:
        """``on_checkpoint``: publish the new file, then promote this delivery's folder.

        The first call also carries the files this delivery resumed from (the other
        candidates' checkpoints of an ``auto`` job), so the promoted folder is always whole.
        Each file is published whole (object stores PUT whole; local ones rename into place).
        """
        for file in sorted(Path(path).parent.iterdir()):
            if not file.is_file() or file.name.endswith(".tmp"):
                continue
            mtime = file.stat().st_mtime_ns
            if self._synced.get(file.name) != mtime:
                self.store.put_file(file, f"{self.folder}/{file.name}")
                self._synced[file.name] = mtime
        if self.promote is None:
            return
        won, previous = self.promote(self.folder)
        if not won:
            self.store.delete(self.folder)  # never promoted: no delivery will read it
            raise ClaimLost(self.job_id)
        if previous and previous != self.folder:
            self.store.delete(previous)
        self.current = self.folder

    def delete(self) -> None:
        """Remove every checkpoint of the job (every delivery's folder): it ended for good."""
        self.store.delete(self.prefix)


class FeatureCacheSync:
    """Teacher features cached in ``cache/features/{tenant_id}/``: in place when local, mirrored when remote.

    One folder per tenant (issue 18): a cache shared by content hash let one tenant tell from a
    job's timing whether another had already distilled the same teacher on the same data."""

    ROOT = StorePaths.FEATURE_CACHE

    def __init__(self, store: ArtifactStore, scratch: Path, tenant_id: str) -> None:
        self.store = store
        self.PREFIX = f"{self.ROOT}/{tenant_id}"
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
