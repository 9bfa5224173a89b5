"""Teachers: validate a Hugging Face classifier directory, copy its own files into the store, record it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.base import new_id, utcnow
from app.db.models import Teacher
from app.errors import Conflict
from app.services.model_dirs import archive_model_dir, default_name, store_model_row, uri_model_dir, validate_model_dir
from app.services.uploads import Upload
from app.settings import Settings
from app.storage import ArtifactStore, StorePaths


def _register(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str, model_dir: Path,
              name: str, shown_as: str, param: str, text_pairs: bool = False) -> Teacher:
    """Validate without torch (``validate_model_dir``), copy the model's own files, insert."""
    from lelp.teacher.loading import read_teacher_config  # lelp.teacher.loading's reader does not import torch

    info = validate_model_dir(model_dir, settings, read_teacher_config, shown_as=shown_as, param=param)
    teacher_id = new_id("tch")
    uri = StorePaths.teacher(teacher_id)
    teacher = Teacher(
        id=teacher_id, tenant_id=tenant_id, name=name[:200], uri=uri, architecture=info.architecture,
        model_type=info.model_type, num_labels=info.num_labels, labels=list(info.labels),
        hidden_size=info.hidden_size, parameters=info.parameters, sha256=info.sha256, text_pairs=text_pairs,
        created_at=utcnow(),
    )
    return store_model_row(session, store, model_dir, teacher, shown_as)


def create_from_archive(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                        upload: Upload, name: str | None, text_pairs: bool = False) -> Teacher:
    """Extract an uploaded archive safely, then register the model directory inside it."""
    with archive_model_dir(upload, settings) as model_dir:
        return _register(session, store, settings, tenant_id, model_dir,
                         name or default_name(upload.filename, "teacher"),
                         shown_as=f"{upload.filename or 'the archive'}'s model directory", param="file",
                         text_pairs=text_pairs)


def create_from_uri(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                    uri: str, name: str | None, text_pairs: bool = False) -> Teacher:
    """Register a model directory under an allowed root (copied, so later changes do not leak in)."""
    with uri_model_dir(uri, settings) as model_dir:
        return _register(session, store, settings, tenant_id, model_dir,
                         name or uri.rstrip("/").rsplit("/", 1)[-1], shown_as=uri, param="uri",
                         text_pairs=text_pairs)


def delete_teacher(session: Session, store: ArtifactStore, teacher: Teacher) -> None:
    """Refuse while a queued or running job still needs the teacher's files (as teacher or student base)."""
    if repo.count_jobs_using(session, teacher_id=teacher.id) or repo.active_jobs_with_student_base(
            session, teacher.tenant_id, teacher.id):
        raise Conflict("a queued or running job uses this teacher; cancel it first", code="teacher_in_use")
    session.delete(teacher)
    session.commit()
    store.delete(teacher.uri)
