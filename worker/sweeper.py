"""The heartbeat sweeper: no job stays ``running`` (or silently ``queued``) forever.

A worker killed with SIGKILL acknowledges nothing, and on the embedded broker nothing
hands its message back; on Redis the message returns only after the (long) visibility
timeout. So the worker process runs ``sweep`` every ``sweep_interval_s`` seconds:
- a ``running`` job whose heartbeat is older than ``heartbeat_stale_s`` goes back to
  ``queued`` and is enqueued again; the next delivery resumes from its last checkpoint,
  and counts an attempt, so a job that keeps killing workers ends ``failed``;
- a ``queued`` job nobody touched for ``queued_stale_s`` is enqueued again (its first
  message may have been lost with the broker). A duplicate message is harmless: the
  runner's claim lets only one delivery run a job.
Each requeue is one conditional UPDATE, so several workers may sweep at once.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.db import repositories as repo
from app.db.base import utcnow
from app.db.models import Job
from app.db.session import session_scope
from app.settings import Settings

log = logging.getLogger("lelp.worker.sweeper")



def sweep_interval(settings: Settings) -> float:
    return float(settings.sweep_interval_s)


def queued_stale_after(settings: Settings) -> float:
    return float(settings.queued_stale_s)


def _touch_queued(session, job_id: str, older_than: datetime) -> bool:
    """Claim the right to re-send a stale queued job (one sweeper wins)."""
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, Job.status == "queued", Job.updated_at < older_than)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def sweep(settings: Settings, *, now: datetime | None = None, running_stale_s: float | None = None) -> list[str]:
    """Requeue stale jobs and return their ids (``running_stale_s=0`` requeues every running job)."""
    from worker.celery_app import enqueue_job

    now = now or utcnow()
    stale_s = settings.heartbeat_stale_s if running_stale_s is None else running_stale_s
    running_cutoff = now - timedelta(seconds=stale_s)
    queued_cutoff = now - timedelta(seconds=queued_stale_after(settings))
    to_send: list[tuple[str, str]] = []
    with session_scope(settings.database_url) as session:
        for job in repo.stale_running_jobs(session, running_cutoff):
            if repo.requeue_job(session, job.id):
                repo.add_event(session, job.id, "requeued",
                               "the job's worker stopped answering; it was queued again",
                               {"attempts": job.attempts})
                to_send.append((job.id, job.device))
        for job in repo.stale_queued_jobs(session, queued_cutoff):
            if _touch_queued(session, job.id, queued_cutoff):
                to_send.append((job.id, job.device))
    # Enqueue only after the commit: the delivery must find the job queued.
    for job_id, device in to_send:
        enqueue_job(job_id, device)
        log.warning("requeued job %s", job_id)
    return [job_id for job_id, _ in to_send]


def requeue_orphans(settings: Settings) -> list[str]:
    """Requeue every running job: for the embedded server, whose one worker is not started yet."""
    return sweep(settings, running_stale_s=0)


class SweeperThread:
    """Runs ``sweep`` periodically inside the worker process (started on ``worker_ready``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lelp-sweeper", daemon=True)

    def _run(self) -> None:
        interval = sweep_interval(self.settings)
        while not self._stop.wait(interval):
            try:
                sweep(self.settings)
            except Exception:  # a database or broker blip: try again next round
                log.warning("sweep failed", exc_info=True)

    def start(self) -> SweeperThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
