"""Datasets: validate a table with ``lelp.data.datasets.read_table``, copy the file into the store."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fsspec
from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.base import new_id, utcnow
from app.db.models import Dataset
from app.errors import Conflict, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from app.services.library_errors import api_error, api_words
from app.services.uploads import Upload
from app.services.uris import check_uri
from app.settings import Settings
from app.storage import ArtifactStore, StorePaths, backend_errors, remote_read_errors


@dataclass(frozen=True)
class ColumnChoice:
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str | None = "label"
    format: str | None = None

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> ColumnChoice:
        """Form fields: an empty ``label_column`` or ``text_pair_column`` means none."""
        return cls(
            text_column=fields.get("text_column") or "text",
            text_pair_column=fields.get("text_pair_column") or None,
            label_column=fields.get("label_column", "label") or None,
            format=fields.get("format") or None,
        )


def table_limits(settings: Settings):  # noqa: ANN201 - lelp.data.bounded.TableLimits (light import)
    """The library's bounds on an uploaded table, from the settings."""
    from lelp.data.bounded import TableLimits

    return TableLimits(max_rows=settings.max_dataset_rows, max_columns=settings.max_dataset_columns,
                       max_cell_chars=settings.max_text_chars, max_bytes=settings.max_dataset_bytes,
                       max_ratio=settings.max_decompression_ratio,
                       max_memory_bytes=settings.max_dataset_memory_bytes)


def _format_of(filename: str, declared: str | None) -> str:
    from lelp.data.datasets import detect_format
    from lelp.errors import DataError

    try:
        return detect_format(filename, declared)
    except DataError as exc:
        raise UnsupportedMediaType(api_words(exc.message), param="format" if declared else "file",
                                   code="unsupported_format") from None


def _register(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str, path: Path, *,
              filename: str, name: str | None, choice: ColumnChoice, sha256: str, size: int) -> Dataset:
    from lelp.data.datasets import label_counts, read_table
    from lelp.errors import LELPError

    fmt = _format_of(filename, choice.format)
    try:
        table = read_table(path, text_column=choice.text_column, text_pair_column=choice.text_pair_column,
                           label_column=choice.label_column, max_text_chars=settings.max_text_chars,
                           max_rows=settings.max_dataset_rows, format=fmt, limits=table_limits(settings))
    except LELPError as exc:  # the library names our temp file and its CLI flags
        shown = filename or "the upload"
        raise api_error(exc, shown={str(path): shown, path.name: shown}) from None
    dataset_id = new_id("ds")
    uri = StorePaths.dataset_file(dataset_id, fmt)
    store.put_file(path, uri)
    dataset = Dataset(
        id=dataset_id, tenant_id=tenant_id, name=(name or Path(filename).name or dataset_id)[:200], uri=uri,
        format=fmt, text_column=choice.text_column, text_pair_column=choice.text_pair_column,
        label_column=choice.label_column, rows=len(table.texts), labelled_rows=table.labelled_rows,
        label_counts=label_counts(table), columns=list(table.columns), sha256=sha256, size_bytes=size,
        created_at=utcnow(),
    )
    session.add(dataset)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        store.delete(StorePaths.dataset(dataset_id))
        raise
    return dataset


def create_from_upload(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                       upload: Upload) -> Dataset:
    choice = ColumnChoice.from_fields(upload.fields)
    _format_of(upload.filename, choice.format)  # 415 before parsing anything
    return _register(session, store, settings, tenant_id, upload.path, filename=upload.filename,
                     name=upload.fields.get("name"), choice=choice, sha256=upload.sha256, size=upload.size)


def create_from_uri(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str, *, uri: str,
                    name: str | None, choice: ColumnChoice) -> Dataset:
    """Copy a file under an allowed root to a temp file (size-capped), then validate and store it."""
    from lelp.data.datasets import file_sha256

    resolved = check_uri(uri, settings.allowed_uri_roots)
    filename = resolved.rstrip("/").rsplit("/", 1)[-1]
    _format_of(filename, choice.format)
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="dataset-", dir=tmp_dir))
    try:
        with backend_errors(resolved, "uri"):
            fs, path = fsspec.core.url_to_fs(resolved)
        with remote_read_errors(uri, "uri"):
            _copy_remote_file(fs, path, uri, settings, workdir / filename)
        local = workdir / filename
        return _register(session, store, settings, tenant_id, local, filename=filename, name=name, choice=choice,
                         sha256=file_sha256(local), size=local.stat().st_size)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _copy_remote_file(fs, path: str, uri: str, settings: Settings, local: Path) -> None:  # noqa: ANN001
    """Copy one file of a user's URI to ``local``, refusing it before the copy when it is too large."""
    if not fs.isfile(path):
        raise Unprocessable(f"{uri!r} is not a file", param="uri", code="invalid_data")
    size = int(fs.size(path))
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(f"{uri!r} is larger than the limit of {settings.max_upload_bytes:,} bytes",
                              param="uri", code="upload_too_large")
    with fs.open(path, "rb") as src, local.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def delete_dataset(session: Session, store: ArtifactStore, dataset: Dataset) -> None:
    if repo.count_jobs_using(session, dataset_id=dataset.id):
        raise Conflict("a queued or running job uses this dataset; cancel it first", code="dataset_in_use")
    session.delete(dataset)
    session.commit()
    store.delete(StorePaths.dataset(dataset.id))
