"""Teachers: validate a Hugging Face model directory, copy it into the store, record it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from app.archives import find_model_dir, safe_extract
from app.db import repositories as repo
from app.db.base import new_id, utcnow
from app.db.models import Teacher
from app.errors import Conflict, Unprocessable
from app.services.pickle_scan import check_pickle_weights
from app.services.uploads import Upload
from app.services.uris import check_uri
from app.settings import Settings
from app.storage import ArtifactStore, open_store


def _register(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str, model_dir: Path,
              name: str, shown_as: str, param: str) -> Teacher:
    """Validate without torch (config, safetensors headers, tokenizer probe in a child), copy, insert.

    A local URI is copied to a scratch directory first: the probe may convert its pickle
    weights, and the caller's files are never changed.
    """
    from lelp.errors import LELPError
    from lelp.teacher import read_teacher_config  # lelp.teacher's reader does not import torch
    from lelp.tokenizer_probe import probe_model_dir

    try:
        read_teacher_config(model_dir, settings.model_limits())  # config bounds before anything runs
        check_pickle_weights(model_dir)  # the second line: the probe's weights_only load is the first
        probe_model_dir(model_dir, timeout_s=settings.probe_timeout_s, memory_bytes=settings.probe_memory_bytes)
        info = read_teacher_config(model_dir, settings.model_limits())  # safetensors now: parameters, hash
    except LELPError as exc:
        exc.message = exc.message.replace(str(model_dir), shown_as)  # server paths mean nothing to the caller
        exc.args = (exc.message,)
        exc.param = param  # the request field; the message names the file and config field
        raise
    teacher_id = new_id("tch")
    uri = f"teachers/{teacher_id}"
    store.put_dir(model_dir, uri)
    teacher = Teacher(
        id=teacher_id, tenant_id=tenant_id, name=name[:200], uri=uri, architecture=info.architecture,
        model_type=info.model_type, num_labels=info.num_labels, labels=list(info.labels),
        hidden_size=info.hidden_size, parameters=info.parameters, sha256=info.sha256, created_at=utcnow(),
    )
    session.add(teacher)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        store.delete(uri)
        raise
    return teacher


def _default_name(filename: str) -> str:
    name = Path(filename).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "teacher"
    return name or "teacher"


def create_from_archive(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                        upload: Upload, name: str | None) -> Teacher:
    """Extract an uploaded archive safely, then register the model directory inside it."""
    workdir = Path(tempfile.mkdtemp(prefix="teacher-", dir=upload.path.parent))
    try:
        safe_extract(upload.path, workdir, max_files=settings.max_archive_files,
                     max_bytes=settings.max_archive_bytes)
        model_dir = find_model_dir(workdir)
        return _register(session, store, settings, tenant_id, model_dir, name or _default_name(upload.filename),
                         shown_as="the archive's model directory", param="file")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def create_from_uri(session: Session, store: ArtifactStore, settings: Settings, tenant_id: str,
                    uri: str, name: str | None) -> Teacher:
    """Register a model directory under an allowed root (copied, so later changes do not leak in)."""
    resolved = check_uri(uri, settings.allowed_uri_roots)
    local = Path(resolved) if "://" not in resolved else None
    if local is not None and not local.is_dir():
        raise Unprocessable(f"{uri!r} is not a model directory", param="uri", code="invalid_teacher")
    remote = open_store(resolved, param="uri") if local is None else None
    workdir = Path(tempfile.mkdtemp(prefix="teacher-", dir=settings.data_dir / "tmp"))
    try:
        if local is not None:
            # Links are left out, as the store copy always did: one could point outside the root.
            shutil.copytree(local, workdir, dirs_exist_ok=True, ignore=lambda d, names: [
                n for n in names if os.path.islink(os.path.join(d, n))])
        else:
            remote.get_dir("", workdir)
        default = local.name if local is not None else resolved.rstrip("/").rsplit("/", 1)[-1]
        return _register(session, store, settings, tenant_id, workdir, name or default, shown_as=uri, param="uri")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def delete_teacher(session: Session, store: ArtifactStore, teacher: Teacher) -> None:
    """Refuse while a queued or running job still needs the teacher's files."""
    if repo.count_jobs_using(session, teacher_id=teacher.id):
        raise Conflict("a queued or running job uses this teacher; cancel it first", code="teacher_in_use")
    session.delete(teacher)
    session.commit()
    store.delete(teacher.uri)
