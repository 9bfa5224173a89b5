"""The job state machine: every change of a job's state is one function here.

Each is ONE conditional UPDATE (the ``WHERE`` names the states it may leave), so two
processes racing for the same job (a redelivered task, a cancel racing a finish, two
sweepers) cannot both win; the function says whether this caller won. An event is
written in the same transaction when the change is one a user should see.

None of these commit: the caller's unit of work does (the request in the API, the
``session_scope`` of a task in the worker), so a state change and the rows that go with it
(the model row of a finished job) are committed together or not at all.

    queued  --claim-->  running  --finish-->  succeeded | failed | cancelled
      ^                   |  ^
      +---requeue_stale---+  +-- claim (heartbeat stale: its worker died)
    queued | running --request_cancel--> cancelled (queued) | cancel flag (running)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from app.db.repositories import add_event

CANCELLED_BEFORE_START = "cancelled before it started"
ERROR_CODE = object()  # ``finish``'s default event data: the error's code


def claim(session: Session, job_id: str, stale_before: datetime) -> bool:
    """Take the job for this delivery: queued, or running with a heartbeat older than ``stale_before``.

    A running job with a fresh heartbeat belongs to a live worker: a duplicate message loses.
    Counts the attempt and sets ``started_at`` once.
    """
    now = utcnow()
    claimable = sa.or_(
        Job.status == JobStatus.QUEUED,
        sa.and_(Job.status == JobStatus.RUNNING,
                sa.or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before)),
    )
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, claimable)
        .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, heartbeat_at=now, updated_at=now,
                started_at=sa.func.coalesce(Job.started_at, now))
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return bool(result.rowcount)


def record_progress(session: Session, job_id: str, progress: dict[str, Any]) -> None:
    """Record progress and beat the heartbeat; ignored once the job has left ``running``."""
    now = utcnow()
    session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(progress=progress, heartbeat_at=now, updated_at=now)
    )


def heartbeat(session: Session, job_id: str) -> None:
    """Show the sweeper the job's worker is alive (during a stage that reports nothing)."""
    now = utcnow()
    session.execute(sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                    .values(heartbeat_at=now, updated_at=now))


def finish(
    session: Session,
    job_id: str,
    status: str,
    message: str | None = None,
    *,
    metrics: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    model_id: str | None = None,
    data: dict[str, Any] | None | object = ERROR_CODE,
) -> bool:
    """Move an active job to a final state, once, with its event; False when it had already finished.

    The event is ``status`` with ``message`` (default: the error's message) and ``data``
    (default ``ERROR_CODE``: ``{"code": error["code"]}`` when there is an error, else none).
    """
    if status not in FINISHED_STATUSES:
        raise ValueError(f"not a final status: {status!r}")
    now = utcnow()
    result = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
        .values(status=status, metrics=metrics, error=error, model_id=model_id, finished_at=now, updated_at=now)
    )
    session.flush()
    if not result.rowcount:
        return False
    if data is ERROR_CODE:
        data = {"code": error["code"]} if error and error.get("code") else None
    add_event(session, job_id, status, message or (error or {}).get("message") or status, data)  # type: ignore[arg-type]
    return True


def requeue_stale(session: Session, job_id: str, stale_before: datetime) -> bool:
    """Put a running job whose heartbeat is older than ``stale_before`` back to queued (its worker died)."""
    now = utcnow()
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING,
                             sa.or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before))
        .values(status=JobStatus.QUEUED, heartbeat_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        return False
    attempts = session.scalar(sa.select(Job.attempts).where(Job.id == job_id))
    add_event(session, job_id, "requeued", "the job's worker stopped answering; it was queued again",
              {"attempts": attempts})
    return True


def touch_queued(session: Session, job_id: str, older_than: datetime) -> bool:
    """Take the right to re-send a queued job nobody touched since ``older_than`` (one sweeper wins)."""
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.updated_at < older_than)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def request_cancel(session: Session, job_id: str) -> str:
    """Cancel a queued job at once; flag a running one for the worker (with its event). Returns the status."""
    now = utcnow()
    done = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now,
                error={"code": "cancelled", "message": CANCELLED_BEFORE_START})
    ).rowcount
    if done:
        add_event(session, job_id, JobStatus.CANCELLED, CANCELLED_BEFORE_START)
        return JobStatus.CANCELLED
    flagged = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(cancel_requested=True, updated_at=now)
    ).rowcount
    if flagged:
        add_event(session, job_id, "cancel_requested", "cancel requested; the worker stops at its next check")
    return str(session.scalar(sa.select(Job.status).where(Job.id == job_id)))


def is_cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(sa.select(Job.cancel_requested).where(Job.id == job_id)))


def stale_running_jobs(session: Session, older_than: datetime) -> list[Job]:
    """Running jobs whose heartbeat is older than ``older_than`` (or missing)."""
    query = sa.select(Job).where(
        Job.status == JobStatus.RUNNING, sa.or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < older_than))
    return list(session.scalars(query))


def stale_queued_jobs(session: Session, older_than: datetime) -> list[Job]:
    """Queued jobs not touched since ``older_than``: their enqueue may have been lost."""
    query = sa.select(Job).where(Job.status == JobStatus.QUEUED, Job.updated_at < older_than)
    return list(session.scalars(query))
