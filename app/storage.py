"""The artifact store: one fsspec filesystem under a root URL.

A local directory by default, any fsspec URL (``s3://bucket/prefix``, ``memory://``) by
setting ``LELP_ARTIFACT_URL``. Paths given to the methods are relative to the root and
always use ``/``. The layout is ``StorePaths`` (the one place its path patterns are written;
``models/{id}/{claim}/`` and ``checkpoints/{job_id}/{claim}/`` by delivery, ``cache/features/{tenant_id}/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK = 1 << 20


class StorePaths:
    """Where each thing lives in the store: every path the API and the worker build comes from here."""

    FEATURE_CACHE = "cache/features"  # teacher features by dataset and teacher hash (the worker's cache)

    @staticmethod
    def teacher(teacher_id: str) -> str:
        return f"teachers/{teacher_id}"

    @staticmethod
    def base_model(base_id: str) -> str:
        return f"base_models/{base_id}"

    @staticmethod
    def dataset(dataset_id: str) -> str:
        return f"datasets/{dataset_id}"

    @staticmethod
    def dataset_file(dataset_id: str, fmt: str) -> str:
        return f"{StorePaths.dataset(dataset_id)}/data.{fmt}"

    @staticmethod
    def model(model_id: str) -> str:
        """Every delivery's folder of a model; the model row's ``uri`` is one of them."""
        return f"models/{model_id}"

    @staticmethod
    def model_delivery(model_id: str, claim: str) -> str:
        """The artifact one delivery (its claim token, ``worker.claim``) uploaded."""
        return f"{StorePaths.model(model_id)}/{claim}"

    @staticmethod
    def exports(model_id: str) -> str:
        """Every cached export package of a model."""
        return f"exports/{model_id}"

    @staticmethod
    def export_file(model_id: str, variant: str) -> str:
        return f"{StorePaths.exports(model_id)}/{variant}.zip"

    @staticmethod
    def checkpoints(job_id: str) -> str:
        """Every delivery's checkpoints of a job (a job checkpointed before claims keeps its files here)."""
        return f"checkpoints/{job_id}"

    @staticmethod
    def checkpoint_delivery(job_id: str, claim: str) -> str:
        return f"{StorePaths.checkpoints(job_id)}/{claim}"


@contextmanager
def backend_errors(url: str, param: str | None) -> Iterator[None]:
    """Turn "no fsspec backend for this scheme" into a 422 (it was a 500).

    fsspec knows ``http://`` and ``s3://`` by name but imports their packages (aiohttp,
    s3fs) only when a filesystem is built, so an uninstalled backend shows up as an
    ``ImportError`` (or a ``ValueError`` for a scheme it does not know at all).
    """
    from app.errors import Unprocessable

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    try:
        yield
    except ImportError as exc:
        first = (str(exc).splitlines() or [""])[0][:160]
        raise Unprocessable(f"this server cannot read {scheme}:// URIs: its fsspec backend is not installed ({first})",
                            param=param, code="uri_scheme_unavailable") from None
    except ValueError as exc:
        if "protocol" not in str(exc).lower():
            raise
        raise Unprocessable(f"this server does not know the URI scheme {scheme!r}", param=param,
                            code="uri_scheme_unavailable") from None


@contextmanager
def remote_read_errors(url: str, param: str | None) -> Iterator[None]:
    """A user's remote URI that cannot be read (no credentials, host unreachable, access denied) is
    the user's to fix: a 422 naming the cause in one line, not a 500 with the backend's traceback."""
    from app.errors import AppError, Unprocessable

    try:
        yield
    except AppError:
        raise
    except Exception as exc:  # noqa: BLE001 - every backend has its own exception tree
        first = (str(exc).splitlines() or [""])[0][:160] or type(exc).__name__
        raise Unprocessable(f"could not read {url}: {first}", param=param, code="uri_unreadable") from None


def open_store(url: str, *, param: str | None = None) -> ArtifactStore:
    """An ``ArtifactStore`` on a user's URI, with ``backend_errors``' 422."""
    with backend_errors(url, param):
        return ArtifactStore(url)


class ArtifactStore:
    """Thin wrapper that keeps every path under the root and hides fsspec's URL handling."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def _full(self, path: str) -> str:
        parts = [p for p in path.strip("/").split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"store paths are plain relative paths, got {path!r}")
        return "/".join([self.root, *parts])

    def local_path(self, path: str) -> Path | None:
        """The file-system path when the store is local, so readers can use files in place."""
        return Path(self._full(path)) if self.is_local else None

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._full(path)))

    def open(self, path: str, mode: str = "rb") -> IO:
        full = self._full(path)
        if "w" in mode and self.is_local:
            Path(full).parent.mkdir(parents=True, exist_ok=True)
        return self.fs.open(full, mode)

    def put_stream(self, path: str, fileobj: BinaryIO) -> int:
        """Copy a readable binary stream into the store in chunks; returns the bytes written."""
        written = 0
        with self.open(path, "wb") as out:
            while chunk := fileobj.read(CHUNK):
                out.write(chunk)
                written += len(chunk)
        return written

    def put_file(self, local_file: str | Path, path: str) -> None:
        if self.is_local:  # copy beside, then rename: a reader never sees half a file
            target = Path(self._full(path))
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(local_file, partial)
            partial.replace(target)
        else:
            self.fs.put_file(str(local_file), self._full(path))

    def put_dir(self, local_dir: str | Path, path: str) -> None:
        """Copy a local directory tree to ``path`` (which ends up with the directory's contents)."""
        local_dir = Path(local_dir)
        for file in sorted(local_dir.rglob("*")):
            if file.is_file() and not file.is_symlink():
                self.put_file(file, f"{path.rstrip('/')}/{file.relative_to(local_dir).as_posix()}")

    def get_dir(self, path: str, local_dir: str | Path) -> Path:
        """Copy the tree under ``path`` to ``local_dir`` (created) and return it."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        for rel in self.list_files(path):
            target = local_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._full(f"{path.rstrip('/')}/{rel}"), str(target))
        return local_dir

    def list_files(self, path: str) -> list[str]:
        """Relative paths (``/``-separated) of every file under ``path``, sorted."""
        base = self._full(path)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        strip = self.fs._strip_protocol(base).rstrip("/") + "/"  # noqa: SLF001
        return sorted(self.fs._strip_protocol(f)[len(strip):] for f in found)  # noqa: SLF001

    def size(self, path: str) -> int:
        return int(self.fs.size(self._full(path)))

    def delete(self, path: str) -> None:
        """Remove a file or a whole tree; a missing path is not an error."""
        full = self._full(path)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)
