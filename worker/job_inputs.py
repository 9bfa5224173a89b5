"""What a job asks for, read from its row once, and mapped to the library's ``DistillConfig``.

Read once so no session stays open while training; the student base is only ever a
registered model of the job's own tenant, fetched by the store sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.db import repositories as repo
from app.db.models import BaseModelRow, Dataset, Job, Teacher
from app.schemas.jobs import Hyperparameters
from lelp.students.registry import DEFAULT_STUDENT_KIND

# The API's hyperparameters, each a DistillConfig field of the same name (tests/app/test_vocabulary.py).
HYPERPARAMETER_FIELDS = tuple(Hyperparameters.model_fields)


@dataclass
class JobInputs:
    """What the worker needs from the database, read once so no session stays open while training."""

    job_id: str
    tenant_id: str
    attempts: int
    method: str
    student: dict[str, Any]
    device: str
    hyperparameters: dict[str, Any]
    teacher_id: str
    teacher_uri: str
    labels: list[str]
    train_uri: str
    train_format: str
    eval_uri: str | None
    eval_format: str | None
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    eval_label_column: str | None = None
    train_dataset_id: str | None = None
    eval_dataset_id: str | None = None
    # a validation dataset (rows like the traffic): its store path, label column ("" for none) and id
    validation_uri: str | None = None
    validation_label_column: str | None = None
    validation_dataset_id: str | None = None
    # store path of the student's base model (a teacher or base model of the same tenant)
    student_base_uri: str | None = None

    @property
    def student_kind(self) -> str:
        """The student's kind; the library's default for a row that names none."""
        return str(self.student.get("kind") or DEFAULT_STUDENT_KIND)


def read_inputs(session: Any, job: Job) -> JobInputs:
    teacher = session.get(Teacher, job.teacher_id) if job.teacher_id else None
    train = session.get(Dataset, job.train_dataset_id) if job.train_dataset_id else None
    evald = session.get(Dataset, job.eval_dataset_id) if job.eval_dataset_id else None
    validation = session.get(Dataset, job.validation_dataset_id) if job.validation_dataset_id else None
    if teacher is None or train is None or (job.eval_dataset_id and evald is None) or \
            (job.validation_dataset_id and validation is None):
        raise MissingInput("the job's teacher or dataset was deleted before it ran")
    return JobInputs(student_base_uri=_student_base_uri(session, job),
        job_id=job.id, tenant_id=job.tenant_id, attempts=job.attempts, method=job.method,
        student=dict(job.student or {}), device=job.device or "auto",
        hyperparameters=dict(job.hyperparameters or {}), teacher_id=teacher.id, teacher_uri=teacher.uri,
        labels=list(teacher.labels or []), train_uri=train.uri, train_format=train.format,
        eval_uri=evald.uri if evald else None, eval_format=evald.format if evald else None,
        text_column=train.text_column, text_pair_column=train.text_pair_column, label_column=train.label_column,
        eval_label_column=evald.label_column if evald else None,
        train_dataset_id=train.id, eval_dataset_id=evald.id if evald else None,
        validation_uri=validation.uri if validation else None,
        validation_label_column=(validation.label_column or "") if validation else None,
        validation_dataset_id=validation.id if validation else None,
    )


def _student_base_uri(session: Any, job: Job) -> str | None:
    """Where the student's base lives in the store: only ever an id of the job's own tenant.

    The API stores ``student.base`` as such an id (a URI is registered as a base model at
    submit); anything else, e.g. a path in a job queued by an older version, is refused.
    """
    base = (job.student or {}).get("base")
    if not base:
        return None
    table = Teacher if str(base).startswith("tch_") else BaseModelRow
    row = repo.get_owned(session, table, job.tenant_id, str(base)) if str(base).startswith(("tch_", "bm_")) else None
    if row is None:
        raise MissingInput(f"the student's base model {str(base)[:80]!r} is not a registered model of this tenant "
                           "(deleted before the job ran?)")
    return row.uri


class MissingInput(Exception):
    """A teacher or dataset row vanished between the job's creation and its run."""

    code = "missing_input"


def build_config(inputs: JobInputs, teacher_dir: Path, train_path: Path, eval_path: Path | None,
                 student_base_dir: Path | None = None, validation_path: Path | None = None) -> Any:
    """The library's ``DistillConfig`` from the job row (unknown keys were refused by the API).

    The student base is the local copy of a store path (``student_base_dir``), never the
    string from the job body.
    """
    from lelp.pipeline import DistillConfig

    hp = {k: v for k, v in inputs.hyperparameters.items() if k in HYPERPARAMETER_FIELDS and v is not None}
    return DistillConfig(
        teacher_dir=str(teacher_dir), train_path=str(train_path), eval_path=str(eval_path) if eval_path else None,
        text_column=inputs.text_column, text_pair_column=inputs.text_pair_column,
        label_column=inputs.label_column, eval_label_column=inputs.eval_label_column, method=inputs.method,
        validation_path=str(validation_path) if validation_path else None,
        validation_label_column=inputs.validation_label_column if validation_path else None,
        student=inputs.student_kind,
        student_base=str(student_base_dir) if student_base_dir is not None else None,
        device=inputs.device, cascade_reference=inputs.hyperparameters.get("cascade_reference"), **hp,
        **({"min_speedup": float(inputs.student["min_speedup"])} if inputs.student.get("min_speedup") is not None
           else {}),
    )
