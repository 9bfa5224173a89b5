"""Recovery: no job stays ``running`` (or silently ``queued``) forever.

A worker killed with SIGKILL acknowledges nothing, and on the embedded broker nothing
hands its message back; on Redis the message returns only after the (long) visibility
timeout. So ``sweep`` (run every ``sweep_interval_s`` by the worker's sweeper thread, and
once at start-up by ``lelp serve``):
- a ``running`` job whose heartbeat is older than ``heartbeat_stale_s`` goes back to
  ``queued`` and is enqueued again; the next delivery resumes from its last checkpoint,
  and counts an attempt, so a job that keeps killing workers ends ``failed``;
- a ``queued`` job nobody touched for ``queued_stale_s`` is enqueued again (its first
  message may have been lost with the broker). A duplicate message is harmless: the
  claim lets only one delivery run a job.
Each requeue is one conditional UPDATE (``app.db.job_states``), so several workers may
sweep at once. This module writes no SQL; it commits once, before enqueueing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.db import job_states
from app.db.base import utcnow
from app.db.session import session_scope
from app.settings import Settings

log = logging.getLogger("lelp.recovery")

Send = Callable[[str, str], None]  # (job_id, device) -> the job's message is on its queue


def _send(job_id: str, device: str) -> None:
    from app.services.jobs import send_job

    send_job(job_id, device)


def sweep(settings: Settings, *, now: datetime | None = None, running_stale_s: float | None = None,
          send: Send | None = None) -> list[str]:
    """Requeue stale jobs and return their ids (``running_stale_s=0`` requeues every running job)."""
    send = send or _send
    now = now or utcnow()
    stale_s = settings.heartbeat_stale_s if running_stale_s is None else running_stale_s
    running_cutoff = now - timedelta(seconds=stale_s)
    queued_cutoff = now - timedelta(seconds=float(settings.queued_stale_s))
    to_send: list[tuple[str, str]] = []
    with session_scope(settings.database_url) as session:
        for job in job_states.stale_running_jobs(session, running_cutoff):
            if job_states.requeue_stale(session, job.id, running_cutoff):
                to_send.append((job.id, job.device))
        for job in job_states.stale_queued_jobs(session, queued_cutoff):
            if job_states.touch_queued(session, job.id, queued_cutoff):
                to_send.append((job.id, job.device))
    # Enqueue only after the commit: the delivery must find the job queued.
    for job_id, device in to_send:
        send(job_id, device)
        log.warning("requeued job %s", job_id)
    return [job_id for job_id, _ in to_send]


def requeue_orphans(settings: Settings, send: Send | None = None) -> list[str]:
    """Requeue every running job: for the embedded server, whose one worker is not started yet."""
    return sweep(settings, running_stale_s=0, send=send)
