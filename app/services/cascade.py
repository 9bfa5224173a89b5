"""Cascade serving and learning from its traffic (issue 22).

* ``configure``: a model becomes a cascade. The threshold is read off the job's validation curve
  (``metrics.cascade.validation``, computed by the worker; ``lelp.cascade.point_for_target``, no
  torch) for the user's target, and stored in ``models.cascade``.
* ``keep_deferred``: with ``keep_traffic`` on, the rows a cascade sent to the teacher are stored
  with the teacher's label in ``traffic_rows``: the model's own tenant only, at most
  ``max_kept_rows`` per model (later rows are dropped, not rotated in: what was kept stays).
* ``redistil``: the job's training rows plus the kept rows become a new dataset, and a new job with
  the parent's settings runs on it; its report compares the share deferred at the same target.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Dataset, Job, Model, Teacher, TrafficRow
from app.errors import Conflict, Unprocessable
from app.schemas.jobs import Hyperparameters, JobCreate, StudentSpec
from app.schemas.models import CascadeRequest
from app.settings import Settings
from app.storage import ArtifactStore

log = logging.getLogger(__name__)


def _validation(model: Model) -> dict:
    validation = ((model.metrics or {}).get("cascade") or {}).get("validation") or {}
    if not validation.get("points") or not validation.get("teacher_accuracy"):
        raise Conflict("this model has no cascade curve (it was trained before cascades existed, or its job had "
                       "no validation rows): distil it again to serve it as a cascade", code="no_cascade_curve")
    return validation


def _eval_deferred(model: Model, target: float | None, threshold: float) -> float | None:
    """The share of the job's evaluation rows the threshold defers (exact for the standard targets)."""
    cascade = (model.metrics or {}).get("cascade") or {}
    for row in cascade.get("targets") or []:
        if target is not None and abs(row["target"] - target) < 1e-9:
            return row["deferred_fraction"]
    curve = cascade.get("curve") or []  # otherwise: the curve's first point at or above the threshold
    above = [p["deferred_fraction"] for p in curve if p.get("threshold", 0) >= threshold]
    return min(above) if above else None


def configure(session: Session, settings: Settings, model: Model, body: CascadeRequest) -> Model:
    """Choose the threshold on validation for the body's target and store the cascade on the model."""
    from lelp.cascade import choose_threshold, point_for_target  # numpy only

    if model.teacher_id is None or session.get(Teacher, model.teacher_id) is None:
        raise Conflict("the model's teacher was deleted: a cascade needs it", code="teacher_missing")
    validation = _validation(model)
    if body.target_accuracy is not None:
        point = point_for_target(validation, body.target_accuracy)
        target = {"target_accuracy": body.target_accuracy}
    else:
        point = choose_threshold(validation["points"], max_deferred_fraction=body.max_deferred_fraction)
        target = {"max_deferred_fraction": body.max_deferred_fraction}
    if body.max_kept_rows is not None and body.max_kept_rows > settings.cascade_max_kept_rows:
        raise Unprocessable(f"max_kept_rows is at most {settings.cascade_max_kept_rows:,} on this server",
                            param="max_kept_rows")
    teacher_acc = validation["teacher_accuracy"]
    model.cascade = {
        "threshold": point["threshold"], **target,
        "validation": {"deferred_fraction": point["deferred_fraction"], "accuracy": point["accuracy"],
                       "teacher_accuracy": teacher_acc,
                       "teacher_fraction": point["accuracy"] / teacher_acc if teacher_acc else None,
                       "rows": validation.get("rows")},
        "eval_deferred_fraction": _eval_deferred(model, body.target_accuracy, point["threshold"]),
        "keep_traffic": body.keep_traffic,
        "max_kept_rows": body.max_kept_rows or settings.cascade_max_kept_rows,
        "max_length": int((model.metrics or {}).get("chosen", {}).get("max_length")
                          or _job_max_length(session, model)),
        "configured_at": utcnow().isoformat(),
    }
    session.commit()
    return model


def _job_max_length(session: Session, model: Model) -> int:
    job = session.get(Job, model.job_id)
    return int(((job.hyperparameters if job else None) or {}).get("max_length") or 128)


def disable(session: Session, model: Model) -> Model:
    model.cascade = None
    session.commit()
    return model


def kept_rows(session: Session, model_id: str) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(TrafficRow)
                              .where(TrafficRow.model_id == model_id)) or 0)


def keep_deferred(session: Session, tenant_id: str, model_id: str, rows: list[tuple[str, str | None, str]],
                  max_rows: int) -> int:
    """Store deferred ``(text, text_pair, teacher label)`` rows up to the model's bound; returns how many."""
    room = max_rows - kept_rows(session, model_id)
    rows = rows[:max(room, 0)]
    if not rows:
        return 0
    now = utcnow()
    session.add_all([TrafficRow(tenant_id=tenant_id, model_id=model_id, text=text, text_pair=pair, label=label,
                                created_at=now) for text, pair, label in rows])
    session.commit()
    return len(rows)


def traffic_summary(session: Session, model: Model) -> dict[str, Any]:
    return {"kept_rows": kept_rows(session, model.id),
            "max_kept_rows": (model.cascade or {}).get("max_kept_rows"),
            "keep_traffic": bool((model.cascade or {}).get("keep_traffic"))}


def _traffic_dataset(session: Session, store: ArtifactStore, settings: Settings, model: Model, train: Dataset,
                     tmp_dir: Path) -> tuple[Dataset, int]:
    """The parent job's training rows plus the kept rows, as a new dataset (the kept rows labelled with the
    teacher's answers where the parent's rows are labelled, unlabelled like them otherwise)."""
    from app.services import datasets as datasets_service
    from app.services.datasets import ColumnChoice
    from lelp.data.datasets import read_table

    local = store.local_path(train.uri)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_dir) as work:
        if local is None:
            local = Path(work) / Path(train.uri).name
            with store.open(train.uri, "rb") as src, local.open("wb") as out:
                out.write(src.read())
        table = read_table(local, text_column=train.text_column, text_pair_column=train.text_pair_column,
                           label_column=train.label_column, format=train.format)
        kept = session.scalars(sa.select(TrafficRow).where(TrafficRow.model_id == model.id)
                               .order_by(TrafficRow.id)).all()
        pairs = table.text_pairs is not None
        path = Path(work) / "transfer.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "text_pair", "label"] if pairs else ["text", "label"])
            for i, text in enumerate(table.texts):
                label = table.labels[i] if table.labels is not None else None
                writer.writerow([text, table.text_pairs[i], label or ""] if pairs else [text, label or ""])
            # The teacher scores every row again when the job extracts its features, so a kept row's
            # stored answer adds nothing to soft targets; it is written as a label only beside labelled
            # rows. Unlabelled transfer rows plus labels of one class (deferred rows are often of one
            # class) would be refused as a single-class training set.
            labelled = table.labels is not None and any(label is not None for label in table.labels)
            for row in kept:
                label = row.label if labelled else ""
                writer.writerow([row.text, row.text_pair or "", label] if pairs else [row.text, label])
        import hashlib

        data = path.read_bytes()
        choice = ColumnChoice(text_column="text", text_pair_column="text_pair" if pairs else None,
                              label_column="label", format="csv")
        dataset = datasets_service._register(session, store, settings, model.tenant_id, path,
                                             filename=f"{model.id}-traffic.csv",
                                             name=f"{train.name} + {len(kept)} cascade rows of {model.id}"[:200],
                                             choice=choice, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return dataset, len(kept)


def redistil(session: Session, store: ArtifactStore, settings: Settings, model: Model) -> tuple[Job, Dataset]:
    """A new job: the parent's teacher, eval data and settings, its training rows plus the kept traffic."""
    from app.services import jobs as jobs_service

    cascade = model.cascade or {}
    parent = session.get(Job, model.job_id)
    train = session.get(Dataset, parent.train_dataset_id) if parent and parent.train_dataset_id else None
    if parent is None or train is None or model.teacher_id is None:
        raise Conflict("the model's job, training data or teacher was deleted: it cannot be distilled again",
                       code="missing_input")
    kept = kept_rows(session, model.id)
    if kept == 0:
        raise Conflict("no traffic kept for this model yet: enable it with POST /v1/models/{id}/cascade "
                       '{"keep_traffic": true, ...} and serve predictions first', code="no_traffic")
    dataset, kept = _traffic_dataset(session, store, settings, model, train, settings.data_dir / "tmp")
    hyperparameters = {k: v for k, v in (parent.hyperparameters or {}).items() if k != "cascade_reference"}
    body = JobCreate(teacher_id=model.teacher_id, train_dataset_id=dataset.id,
                     eval_dataset_id=parent.eval_dataset_id, validation_dataset_id=parent.validation_dataset_id,
                     method=parent.method,
                     student=StudentSpec(**{k: v for k, v in (parent.student or {}).items() if k in ("kind", "base")}),
                     device=parent.device, hyperparameters=Hyperparameters(**hyperparameters))
    job, _ = jobs_service.create_job(session, settings, model.tenant_id, body, None, store)
    target = cascade.get("target_accuracy")
    if target is None:  # a deferral budget: compare at the accuracy it reached on validation
        target = round((cascade.get("validation") or {}).get("teacher_fraction") or 1.0, 5)
    job.hyperparameters = {**(job.hyperparameters or {}), "cascade_reference": {
        "from_model_id": model.id, "target": float(target), "kept_rows": kept,
        "deferred_before": _eval_deferred(model, float(target), float(cascade.get("threshold", 1.0)))
        if cascade else None}}
    session.commit()
    return job, dataset
