"""Base models: pretrained encoders a tenant registers to start a student from (``student.base``).

A base model is checked like a teacher (same config reader, safe weights, a tokenizer) but
needs no classification head. ``resolve_student_base`` is the only way a job's ``student.base``
reaches the worker: the id of one of the tenant's teachers or base models, or a URI under
``LELP_ALLOWED_URI_ROOTS``, which is registered as a base model here (copied into the store,
like a teacher URI), so the worker only ever reads the store, never a path a tenant typed.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.base import new_id, utcnow
from app.db.models import BaseModelRow, Teacher
from app.errors import Conflict, not_found
from app.services.model_dirs import archive_model_dir, default_name, store_model_row, uri_model_dir, validate_model_dir
from app.services.uploads import Upload
from app.settings import Settings
from app.storage import ArtifactStore, StorePaths

# What an id of ours looks like; anything else given as a base is read as a URI.
OWNED_ID = re.compile(r"(tch|bm)_[A-Za-z0-9]{1,60}")


def _register(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str, model_dir: Path,
              name: str, shown_as: str, param: str) -> BaseModelRow:
    from lelp.uploads.model_files import read_base_config

    info = validate_model_dir(model_dir, settings, read_base_config, shown_as=shown_as, param=param)
    base_id = new_id("bm")
    uri = StorePaths.base_model(base_id)
    row = BaseModelRow(id=base_id, tenant_id=tenant_id, name=name[:200], uri=uri, architecture=info.architecture,
                       model_type=info.model_type, hidden_size=info.hidden_size, parameters=info.parameters,
                       sha256=info.sha256, created_at=utcnow())
    return store_model_row(session, store, model_dir, row, shown_as)


def create_from_archive(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                        upload: Upload, name: str | None) -> BaseModelRow:
    with archive_model_dir(upload, settings) as model_dir:
        return _register(session, store, settings, tenant_id, model_dir, name or default_name(upload.filename, "base"),
                         shown_as=f"{upload.filename or 'the archive'}'s model directory", param="file")


def create_from_uri(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str, uri: str,
                    name: str | None, *, param: str = "uri") -> BaseModelRow:
    with uri_model_dir(uri, settings, param=param, code="invalid_base_model") as model_dir:
        try:
            return _register(session, store, settings, tenant_id, model_dir,
                             name or uri.rstrip("/").rsplit("/", 1)[-1], shown_as=uri, param=param)
        except Exception as exc:
            if getattr(exc, "param", None) in (None, "file", "uri"):
                exc.param = param  # type: ignore[attr-defined]
            raise


def resolve_student_base(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                         base: str) -> str:
    """The id of the model ``student.base`` names: another tenant's id is a 404, a path outside the roots a 422."""
    if OWNED_ID.fullmatch(base):
        table = Teacher if base.startswith("tch_") else BaseModelRow
        row = repo.get_owned(session, table, tenant_id, base)
        session.commit()
        if row is None:
            raise not_found("teacher" if table is Teacher else "base_model", base, param="student.base")
        return row.id
    return create_from_uri(session, store, settings, tenant_id, base, None, param="student.base").id


def delete_base_model(session: Session, store: ArtifactStore, row: BaseModelRow) -> None:
    if repo.active_jobs_with_student_base(session, row.tenant_id, row.id):
        raise Conflict("a queued or running job starts its student from this base model; cancel it first",
                       code="base_model_in_use")
    session.delete(row)
    session.commit()
    store.delete(row.uri)
