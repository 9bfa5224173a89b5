"""Job and model reports: the stored ``report.html`` of a student, or a live page while a job runs.

The finished report is drawn by the library when the job ends (``lelp.report``, in the
worker); the API only reads the file back, so it never needs matplotlib or torch. The live
page is a Jinja2 template over the job row: stage, progress, ETA and the loss curve so far
(the worker keeps ``progress["history"]``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.base import utcnow
from app.db.models import Job, Model
from app.errors import NotFound
from app.storage import ArtifactStore
from app.ui import templates

REPORT_FILE = "report.html"  # the name lelp.report writes (lelp.report.files.REPORT_FILE)
LIVE_EVENTS = 20
CURVE_W, CURVE_H = 480, 200
CURVE_BOX = (58, 10, CURVE_W - 12, CURVE_H - 40)  # left, top, right, bottom: room for ticks and axis titles


def stored_report(store: ArtifactStore, model: Model) -> str:
    """The model's ``report.html`` from the artifact store."""
    path = f"{model.uri}/{REPORT_FILE}"
    if not store.exists(path):
        raise NotFound(f"model {model.id!r} has no report.html: it was trained before reports were written",
                       code="report_not_found")
    with store.open(path, "rb") as fh:
        html = fh.read().decode("utf-8")
    # Exports are made after the page was drawn: the row's figures replace the page's section
    # (Jinja2 only; lelp.report.exports imports neither torch nor matplotlib).
    from lelp.report.exports import splice_exports

    return splice_exports(html, model.metrics or {})


def job_report(session: Session, store: ArtifactStore, job: Job) -> tuple[str, bool]:
    """(html, live): the student's report once the job succeeded, else the live page."""
    if job.status == "succeeded" and job.model_id:
        model = repo.get_owned(session, Model, job.tenant_id, job.model_id)
        session.commit()
        if model is not None:
            return stored_report(store, model), False
    events = repo.list_events(session, job.id, after=None, limit=500)[-LIVE_EVENTS:]
    session.commit()
    return live_page(job, events), True


def _runs(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    runs: dict[str, list[tuple[int, float]]] = {}
    for point in history:
        loss = point.get("train_loss")
        if isinstance(loss, int | float) and isinstance(point.get("epoch"), int):
            runs.setdefault(str(point.get("candidate") or "training"), []).append((point["epoch"], float(loss)))
    return runs


def _nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering ``[low, high]``."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(f * magnitude for f in (1, 2, 2.5, 5, 10) if f * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first + i * step, 12) for i in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]
    return ticks if len(ticks) >= 2 else [*ticks, round(ticks[-1] + step, 12)]


def loss_chart(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The live page's train-loss chart: per training run (candidate) its per-epoch loss as SVG points,
    with the axes' ticks (epochs along x, loss up y) in one shared box.

    A few dozen points, drawn here rather than with a plotting library because the API process
    must stay light (matplotlib belongs to the worker, which draws the final report).
    """
    runs = _runs(history)
    if not runs:
        return None
    left, top, right, bottom = CURVE_BOX
    losses = [loss for run in runs.values() for _, loss in run]
    last_epoch = max(max(epoch for run in runs.values() for epoch, _ in run), 2)
    y_ticks = _nice_ticks(min(losses), max(losses))
    low, high = y_ticks[0], y_ticks[-1]
    step = max(1, math.ceil(last_epoch / 8))

    def x_of(epoch: float) -> float:
        return left + (right - left) * (epoch - 1) / (last_epoch - 1)

    def y_of(loss: float) -> float:
        return top + (bottom - top) * (1 - (loss - low) / (high - low))

    digits = max(0, min(4, 1 - math.floor(math.log10(y_ticks[1] - y_ticks[0]))))
    curves = []
    for name, run in runs.items():
        pts = [(x_of(e), y_of(loss)) for e, loss in run]
        curves.append({"name": name, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in pts),
                       "last": run[-1], "dots": pts})
    return {"curves": curves, "box": CURVE_BOX,
            "x_ticks": [(x_of(e), str(e)) for e in range(1, last_epoch + 1, step)],
            "y_ticks": [(y_of(t), f"{t:.{digits}f}") for t in y_ticks]}


def _age(at: datetime | None) -> str:
    if at is None:
        return ""
    seconds = max(0, int((utcnow() - at).total_seconds()))
    return f"{seconds // 60} min {seconds % 60} s ago" if seconds >= 60 else f"{seconds} s ago"


def live_page(job: Job, events: list) -> str:
    progress = dict(job.progress or {})
    history = progress.get("history") or []
    return templates.get_template("job_report.html").render(
        job=job, progress=progress, fraction=progress.get("fraction"), eta_s=progress.get("eta_s"),
        chart=loss_chart(history if isinstance(history, list) else []), width=CURVE_W, height=CURVE_H,
        events=events, updated=_age(job.updated_at), generated_at=utcnow().strftime("%Y-%m-%d %H:%M:%S UTC"))
