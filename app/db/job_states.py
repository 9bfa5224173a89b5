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

Fencing: ``claim`` hands the delivery a fresh ``claim_token``; the worker's writes
(``record_progress``, ``heartbeat``, ``promote_checkpoint``, ``finish``) take it and change
nothing once another delivery holds the job or the sweep requeued it, so a worker cut off
past the heartbeat timeout cannot write over the copy that took its place.

Outbox: ``enqueued_at`` is NULL while the job is owed a message (just created, just
requeued, or the broker lost its messages); ``mark_enqueued`` sets it after a send, and the
recovery sweep re-sends what stayed unsent (``take_unsent``), so a process that dies between
its commit and its send leaves a job without a message for a bounded time only.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from app.db.repositories import add_event

CANCELLED_BEFORE_START = "cancelled before it started"
ERROR_CODE = object()  # ``finish``'s default event data: the error's code


def _held(job_id: str, claim_token: str | None) -> list[Any]:
    """The WHERE of a worker's write: the job is running, and (when given) under this claim."""
    conditions = [Job.id == job_id, Job.status == JobStatus.RUNNING]
    if claim_token is not None:
        conditions.append(Job.claim_token == claim_token)
    return conditions


def claim(session: Session, job_id: str, stale_before: datetime) -> str | None:
    """Take the job for this delivery: queued, or running with a heartbeat older than ``stale_before``.

    Returns the delivery's claim token (None when it lost). A running job with a fresh
    heartbeat belongs to a live worker: a duplicate message loses. Counts the attempt and
    sets ``started_at`` once.
    """
    now = utcnow()
    token = secrets.token_hex(16)
    claimable = sa.or_(
        Job.status == JobStatus.QUEUED,
        sa.and_(Job.status == JobStatus.RUNNING,
                sa.or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before)),
    )
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, claimable)
        .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, heartbeat_at=now, updated_at=now,
                started_at=sa.func.coalesce(Job.started_at, now), claim_token=token)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return token if result.rowcount else None


def record_progress(session: Session, job_id: str, progress: dict[str, Any], claim_token: str | None = None) -> bool:
    """Record progress and beat the heartbeat; False (nothing written) once the job left ``running`` or the claim."""
    now = utcnow()
    result = session.execute(
        sa.update(Job).where(*_held(job_id, claim_token))
        .values(progress=progress, heartbeat_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def heartbeat(session: Session, job_id: str, claim_token: str | None = None) -> bool:
    """Show the sweeper the job's worker is alive; False when this claim no longer holds the job."""
    now = utcnow()
    result = session.execute(sa.update(Job).where(*_held(job_id, claim_token))
                             .values(heartbeat_at=now, updated_at=now)
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount)


def promote_checkpoint(session: Session, job_id: str, claim_token: str, uri: str) -> tuple[bool, str | None]:
    """Make ``uri`` the job's checkpoint folder, if this claim still holds the job.

    Returns (won, the folder it replaced): the winner removes the replaced folder, a loser
    its own (it was never promoted, so no later delivery reads it).
    """
    previous = session.scalar(sa.select(Job.checkpoint_uri).where(Job.id == job_id))
    result = session.execute(sa.update(Job).where(*_held(job_id, claim_token))
                             .values(checkpoint_uri=uri)
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount), previous


# Every move to a final state owes the job's webhook (if it named one) in the same UPDATE: a delivery
# (worker.webhooks) is owed exactly when the job finished, never twice, never for a job that did not.
WEBHOOK_OWED = sa.case((Job.webhook_url.is_not(None), "pending"), else_=None)


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
    claim_token: str | None = None,
) -> bool:
    """Move an active job to a final state, once, with its event; False when it had already finished.

    The event is ``status`` with ``message`` (default: the error's message) and ``data``
    (default ``ERROR_CODE``: ``{"code": error["code"]}`` when there is an error, else none).
    With ``claim_token`` (a worker's delivery) only a running job under that claim moves:
    a delivery that lost its claim cannot end a job another one runs or finished.
    """
    if status not in FINISHED_STATUSES:
        raise ValueError(f"not a final status: {status!r}")
    now = utcnow()
    where = _held(job_id, claim_token) if claim_token is not None else [Job.id == job_id,
                                                                         Job.status.in_(ACTIVE_STATUSES)]
    result = session.execute(
        sa.update(Job)
        .where(*where)
        .values(status=status, metrics=metrics, error=error, model_id=model_id, finished_at=now, updated_at=now,
                webhook_state=WEBHOOK_OWED)
    )
    session.flush()
    if not result.rowcount:
        return False
    if data is ERROR_CODE:
        data = {"code": error["code"]} if error and error.get("code") else None
    add_event(session, job_id, status, message or (error or {}).get("message") or status, data)  # type: ignore[arg-type]
    return True


def end_webhook(session: Session, job_id: str, state: str) -> bool:
    """Settle a pending webhook delivery: ``delivered``, ``failed`` or (a failed try, more to come) ``pending``."""
    if state not in ("pending", "delivered", "failed"):
        raise ValueError(f"not a webhook state: {state!r}")
    result = session.execute(sa.update(Job).where(Job.id == job_id, Job.webhook_state == "pending")
                             .values(webhook_state=state))
    return bool(result.rowcount)


def mark_webhook_sent(session: Session, job_id: str) -> bool:
    """The pending delivery reached the broker (its outbox entry is done)."""
    result = session.execute(sa.update(Job).where(Job.id == job_id, Job.webhook_state == "pending")
                             .values(webhook_sent_at=utcnow()).execution_options(synchronize_session=False))
    return bool(result.rowcount)


def unsent_webhooks(session: Session, older_than: datetime) -> list[str]:
    """Jobs finished before ``older_than`` whose pending delivery never reached the broker (the process
    that finished them died between its commit and its send, or the broker refused it)."""
    query = sa.select(Job.id).where(Job.webhook_state == "pending", Job.webhook_sent_at.is_(None),
                                    Job.finished_at < older_than)
    return list(session.scalars(query))


def take_unsent_webhook(session: Session, job_id: str) -> bool:
    """Take the right to send an owed delivery (one sweeper wins; marked sent now, undone if the send fails)."""
    result = session.execute(sa.update(Job).where(Job.id == job_id, Job.webhook_state == "pending",
                                                  Job.webhook_sent_at.is_(None))
                             .values(webhook_sent_at=utcnow()).execution_options(synchronize_session=False))
    return bool(result.rowcount)


def forget_webhook_send(session: Session, job_id: str) -> None:
    """A send that failed: the delivery is owed again."""
    session.execute(sa.update(Job).where(Job.id == job_id, Job.webhook_state == "pending")
                    .values(webhook_sent_at=None).execution_options(synchronize_session=False))


def requeue_stale(session: Session, job_id: str, stale_before: datetime, by: str | None = None) -> bool:
    """Put a running job whose heartbeat is older than ``stale_before`` back to queued (its worker died).

    The claim is dropped (the old delivery's writes now change nothing) and a message is owed
    (``enqueued_at`` NULL). A job whose worker still beats is never requeued: the heartbeat
    condition is part of the UPDATE. ``by`` names the sweeping process in the event.
    """
    now = utcnow()
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING,
                             sa.or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before))
        .values(status=JobStatus.QUEUED, heartbeat_at=None, updated_at=now, claim_token=None, enqueued_at=None)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        return False
    attempts = session.scalar(sa.select(Job.attempts).where(Job.id == job_id))
    data: dict[str, Any] = {"attempts": attempts}
    if by:
        data["by"] = by
    add_event(session, job_id, "requeued", "the job's worker stopped answering; it was queued again", data)
    return True


def touch_queued(session: Session, job_id: str, older_than: datetime) -> bool:
    """Take the right to re-send a queued job nobody touched since ``older_than`` (one sweeper wins)."""
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.updated_at < older_than)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def mark_enqueued(session: Session, job_id: str) -> bool:
    """Record that the job's message reached the broker (the outbox entry is done)."""
    now = utcnow()
    result = session.execute(sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                             .values(enqueued_at=now).execution_options(synchronize_session=False))
    return bool(result.rowcount)


def unsent_jobs(session: Session, older_than: datetime) -> list[Job]:
    """Queued jobs owed a message since before ``older_than``: whoever should have sent it died or failed."""
    query = sa.select(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_(None),
                                 Job.updated_at < older_than)
    return list(session.scalars(query))


def take_unsent(session: Session, job_id: str, older_than: datetime) -> bool:
    """Take the right to send an unsent job (one sweeper wins; the others see it touched)."""
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.enqueued_at.is_(None),
                             Job.updated_at < older_than)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def sent_jobs(session: Session, sent_before: datetime) -> list[Job]:
    """Queued jobs whose message was handed to the broker before ``sent_before`` (the broker audit's rows)."""
    query = sa.select(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_not(None),
                                 Job.enqueued_at < sent_before)
    return list(session.scalars(query))


def forget_message(session: Session, job_id: str, sent_before: datetime) -> bool:
    """The broker holds no message a worker would run for this queued job: it is owed one again."""
    # updated_at kept (no ``onupdate``), as in forget_messages: the sweep sends it at once
    result = session.execute(sa.update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED,
                                                  Job.enqueued_at < sent_before)
                             .values(enqueued_at=None, updated_at=Job.updated_at)
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount)


def forget_messages(session: Session) -> int:
    """The broker lost its messages (restarted empty): every queued job is owed one again."""
    # updated_at kept (no ``onupdate``): the sweep sends them at once, not after the grace
    result = session.execute(sa.update(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_not(None))
                             .values(enqueued_at=None, updated_at=Job.updated_at)
                             .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)


def request_cancel(session: Session, job_id: str) -> str:
    """Cancel a queued job at once; flag a running one for the worker (with its event). Returns the status."""
    now = utcnow()
    done = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now,
                error={"code": "cancelled", "message": CANCELLED_BEFORE_START}, webhook_state=WEBHOOK_OWED)
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


def newest_running_heartbeat(session: Session) -> datetime | None:
    """The most recent heartbeat of any running job (timezone-aware), or None."""
    newest = session.scalar(sa.select(sa.func.max(Job.heartbeat_at)).where(Job.status == JobStatus.RUNNING))
    if newest is not None and newest.tzinfo is None:  # SQLite hands back naive UTC datetimes
        newest = newest.replace(tzinfo=utcnow().tzinfo)
    return newest


def stale_queued_jobs(session: Session, older_than: datetime) -> list[Job]:
    """Queued jobs sent but not touched since ``older_than``: the broker may have dropped their message."""
    query = sa.select(Job).where(Job.status == JobStatus.QUEUED, Job.enqueued_at.is_not(None),
                                 Job.updated_at < older_than)
    return list(session.scalars(query))

