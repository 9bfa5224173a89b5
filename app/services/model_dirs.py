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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.archives import find_model_dir, safe_extract
from app.errors import Unprocessable
from app.services.library_errors import api_error
from app.services.uploads import Upload
from app.services.uris import check_uri
from app.settings import Settings
from app.storage import ArtifactStore, open_store, remote_read_errors

T = TypeVar("T")


def put_model_dir(store: ArtifactStore, source: Path, uri: str, shown_as: str) -> None:
    """Copy the model's own files from ``source`` to the store's ``uri`` (never through a link)."""
    from lelp.errors import LELPError
    from lelp.uploads.model_files import copy_model_files, model_file_names

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


def store_model_row(session: Session, store: ArtifactStore, model_dir: Path, row: Any, shown_as: str) -> Any:
    """Copy the model's files to ``row.uri``, then insert ``row``; a failed insert leaves no files behind."""
    put_model_dir(store, model_dir, row.uri, shown_as)
    session.add(row)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        store.delete(row.uri)
        raise
    return row


@contextmanager
def archive_model_dir(upload: Upload, settings: Settings) -> Iterator[Path]:
    """The model directory inside an uploaded archive, extracted safely into a temp dir."""
    workdir = Path(tempfile.mkdtemp(prefix="model-", dir=upload.path.parent))
    try:
        safe_extract(upload.path, workdir, max_files=settings.max_archive_files,
                     max_bytes=settings.max_archive_bytes, max_ratio=settings.max_decompression_ratio)
        yield find_model_dir(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def uri_model_dir(uri: str, settings: Settings, *, param: str = "uri", code: str = "invalid_teacher") -> Iterator[Path]:
    """A copy of the model directory under an allowed root, in a scratch directory.

    Always a copy: the upload checks may convert pickle weights to safetensors, and the caller's
    files are never changed; a local copy takes only the model's own files, never a link.
    """
    from lelp.errors import LELPError
    from lelp.uploads.model_files import copy_model_files

    resolved = check_uri(uri, settings.allowed_uri_roots, param=param)
    local = Path(resolved) if "://" not in resolved else None
    if local is not None and not local.is_dir():
        raise Unprocessable(f"{uri!r} is not a model directory", param=param, code=code)
    remote = open_store(resolved, param=param) if local is None else None
    tmp = settings.data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="model-", dir=tmp))
    try:
        if local is not None:
            try:
                copy_model_files(local, workdir)
            except LELPError as exc:
                exc.param = param
                raise api_error(exc, shown={str(local): uri}) from None
        else:
            with remote_read_errors(uri, param):
                remote.get_dir("", workdir)
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def validate_model_dir(model_dir: Path, settings: Settings, read: Callable[..., T], *, shown_as: str,
                       param: str) -> T:
    """Check a model directory without torch in this process, for teachers and base models alike.

    Config bounds come first, before anything runs; then the pickle opcode scan (the second
    line); then the tokenizer probe in a child with a time and memory limit, which also converts
    ``pytorch_model.bin`` to safetensors with ``weights_only`` loading (the first line). The
    config is read again afterwards for the parameter count and hash of the stored files.
    """
    from lelp.errors import LELPError
    from lelp.uploads.pickle_scan import check_pickle_weights
    from lelp.uploads.tokenizer_probe import probe_model_dir

    try:
        read(model_dir, settings.model_limits())
        check_pickle_weights(model_dir)
        probe_model_dir(model_dir, timeout_s=settings.probe_timeout_s, memory_bytes=settings.probe_memory_bytes)
        return read(model_dir, settings.model_limits())
    except LELPError as exc:
        exc.param = param  # the request field; the message names the file and the config field
        raise api_error(exc, shown={str(model_dir): shown_as}) from None


def default_name(filename: str, fallback: str) -> str:
    name = Path(filename).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or fallback
    return name or fallback
