"""Model directories a tenant names: where they come from, and copying them into the store.

Shared by teachers and base models, so both follow the same rules: an archive is extracted
safely (``app.archives``); a URI must be under ``LELP_ALLOWED_URI_ROOTS`` (``app.services.uris``:
real paths, no symlink escapes, whole path components); and only the model's own files
(config, weights, tokenizer; regular files, never a link) are copied into the store.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.archives import find_model_dir, safe_extract
from app.errors import Unprocessable
from app.services.library_errors import api_error
from app.services.uploads import Upload
from app.services.uris import check_uri
from app.settings import Settings
from app.storage import ArtifactStore


def put_model_dir(store: ArtifactStore, source: Path, uri: str, shown_as: str) -> None:
    """Copy the model's own files from ``source`` to the store's ``uri`` (never through a link)."""
    from lelp.errors import LELPError
    from lelp.model_files import copy_model_files, model_file_names

    try:
        local = store.local_path(uri)
        if local is not None:
            copy_model_files(source, local)
            return
        for name in model_file_names(source):
            fd = os.open(source / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fh:
                store.put_stream(f"{uri}/{name}", fh)
    except LELPError as exc:
        store.delete(uri)
        raise api_error(exc, shown={str(source): shown_as}) from None


@contextmanager
def archive_model_dir(upload: Upload, settings: Settings) -> Iterator[Path]:
    """The model directory inside an uploaded archive, extracted safely into a temp dir."""
    workdir = Path(tempfile.mkdtemp(prefix="model-", dir=upload.path.parent))
    try:
        safe_extract(upload.path, workdir, max_files=settings.max_archive_files,
                     max_bytes=settings.max_archive_bytes)
        yield find_model_dir(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def uri_model_dir(uri: str, settings: Settings, *, param: str = "uri", code: str = "invalid_teacher") -> Iterator[Path]:
    """A model directory under an allowed root: in place when local, downloaded when remote."""
    resolved = check_uri(uri, settings.allowed_uri_roots, param=param)
    if "://" not in resolved:
        local = Path(resolved)
        if not local.is_dir():
            raise Unprocessable(f"{uri!r} is not a model directory", param=param, code=code)
        yield local
        return
    tmp = settings.data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="model-", dir=tmp))
    try:
        ArtifactStore(resolved).get_dir("", workdir)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def default_name(filename: str, fallback: str) -> str:
    name = Path(filename).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or fallback
    return name or fallback
