"""Recovery: no job stays ``running`` (or silently ``queued``) forever, whichever process dies when.

A worker killed with SIGKILL acknowledges nothing, and on the embedded broker nothing
hands its message back; on Redis the message returns only after the (long) visibility
timeout. So ``sweep`` (run every ``sweep_interval_s`` by every worker's sweeper thread and
every API process, and once at start-up by ``lelp serve``):

1. a Redis broker that lost its mark restarted empty (``app.queue.broker_emptied``): every
   queued job is owed its message again (``job_states.forget_messages``). On Redis the sweep
   also reads the queues (at most every ``broker_audit_interval_s``): a job queued and sent
   ``enqueue_grace_s`` ago that no queue holds, and that no worker took within
   ``heartbeat_stale_s``, is owed its message again (``app.queue.job_messages``). A broker link
   that breaks makes Celery drop the messages its worker had reserved, and kombu's hand-back
   fails while the broker is away; the restart mark does not tell that apart;
2. a ``running`` job whose heartbeat is older than ``heartbeat_stale_s`` goes back to
   ``queued`` (its claim dropped, so the lost worker can no longer write) and is sent again;
   the next delivery resumes from its last checkpoint and counts an attempt, so a job that
   keeps killing workers ends ``failed``. A job whose worker still beats is never requeued,
   nor one whose worker could not beat because the database was down (the sweeper thread
   waits ``heartbeat_stale_s`` after an outage before judging heartbeats);
3. a ``queued`` job still owed its message ``enqueue_grace_s`` after its commit is sent
   (the process that committed it died before its send, or the broker refused the send):
   with a live worker or API process, no job waits without a message longer than
   ``enqueue_grace_s + sweep_interval_s`` (20 s by default);
4. a ``queued`` job sent but untouched for ``queued_stale_s`` is sent again (a broker
   that dropped a message some other way);
5. a finished job's webhook delivery not handed to the broker ``enqueue_grace_s`` after the job
   finished is sent (``app.services.webhooks``; the same outbox, ``jobs.webhook_sent_at``).
A duplicate message is harmless: the claim lets only one delivery run a job. Each change is
one conditional UPDATE (``app.db.job_states``), so any number of processes may sweep at once;
each send happens after its commit and is marked done after it (a transactional outbox).
"""

from __future__ import annotations

import logging
import os
import socket
import time
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


def process_name() -> str:
    """This process as ``host/pid``: who swept (``requeued`` events) or runs an attempt (``started``)."""
    return f"{socket.gethostname()}/{os.getpid()}"


def _check_broker(settings: Settings) -> int:
    """Step 1: a broker that came back empty owes every queued job its message; returns how many."""
    from app.queue import broker_emptied, mark_broker

    try:
        if not broker_emptied(settings.broker_url):
            return 0
    except Exception:  # the broker is down: nothing can be sent now; the next sweep asks again
        log.warning("the broker did not answer the sweep", exc_info=True)
        return 0
    with session_scope(settings.database_url) as session:
        owed = job_states.forget_messages(session)
    mark_broker(settings.broker_url)  # after the commit: a sweeper that dies here leaves the mark unset
    if owed:
        log.warning("the broker lost its messages (restarted empty?): %d queued jobs will be sent again", owed)
    return owed


def _audit_broker(settings: Settings, now: datetime) -> list[str]:
    """Step 1, read: queued jobs the broker holds no live message for are owed one; returns their ids."""
    from app.queue import job_messages

    sent_before = now - timedelta(seconds=float(settings.enqueue_grace_s))
    with session_scope(settings.database_url) as session:
        candidates = [job.id for job in job_states.sent_jobs(session, sent_before)]
    if not candidates:
        return []
    try:
        held = job_messages(settings.broker_url)
    except Exception:  # the broker is down: nothing can be sent now; the next sweep asks again
        log.warning("the broker did not answer the audit", exc_info=True)
        return []
    if held is None:
        return []
    taken_after = time.time() - settings.heartbeat_stale_s  # kombu stamps a reservation with time.time()
    lost = [job_id for job_id in candidates if job_id not in held.waiting
            and held.reserved_at.get(job_id, float("-inf")) < taken_after]
    owed = []
    with session_scope(settings.database_url) as session:
        for job_id in lost:
            if job_states.forget_message(session, job_id, sent_before):
                owed.append(job_id)
    for job_id in owed:
        log.warning("job %s: the broker holds no message a worker is running or would run (lost, or "
                    "taken and dropped by a worker whose broker link broke); it is sent again", job_id)
    return owed


def sweep(settings: Settings, *, now: datetime | None = None, running_stale_s: float | None = None,
          send: Send | None = None, requeue_running: bool = True, audit_broker: bool = True) -> list[str]:
    """Requeue stale jobs, send what is owed; returns the ids sent (``running_stale_s=0``: every running job).

    ``requeue_running=False`` skips step 2 (the sweeper thread's choice right after the
    database came back: heartbeats could not be written while it was down);
    ``audit_broker=False`` skips reading the broker's queues (the thread does it every
    ``broker_audit_interval_s``, not every sweep).
    """
    send = send or _send
    _check_broker(settings)
    now = now or utcnow()
    if audit_broker:
        _audit_broker(settings, now)
    stale_s = settings.heartbeat_stale_s if running_stale_s is None else running_stale_s
    running_cutoff = now - timedelta(seconds=stale_s)
    unsent_cutoff = now - timedelta(seconds=float(settings.enqueue_grace_s))
    queued_cutoff = now - timedelta(seconds=float(settings.queued_stale_s))
    to_send: list[tuple[str, str]] = []
    with session_scope(settings.database_url) as session:
        by = process_name()
        for job in job_states.stale_running_jobs(session, running_cutoff) if requeue_running else []:
            if job_states.requeue_stale(session, job.id, running_cutoff, by=by):
                to_send.append((job.id, job.device))
    sent = _send_all(settings, to_send, send, "requeued job %s")
    to_send = []
    with session_scope(settings.database_url) as session:
        for job in job_states.unsent_jobs(session, unsent_cutoff):
            if job_states.take_unsent(session, job.id, unsent_cutoff):
                to_send.append((job.id, job.device))
        for job in job_states.stale_queued_jobs(session, queued_cutoff):
            if job_states.touch_queued(session, job.id, queued_cutoff):
                to_send.append((job.id, job.device))
    sent += _send_all(settings, to_send, send, "sent job %s again: its message was owed or lost")
    _send_webhooks(settings, unsent_cutoff)
    return sent


def _send_webhooks(settings: Settings, older_than: datetime) -> list[str]:
    """Step 5: a finished job's webhook delivery still owed ``enqueue_grace_s`` after it finished is sent."""
    from app.services.webhooks import send_webhook

    with session_scope(settings.database_url) as session:
        taken = [job_id for job_id in job_states.unsent_webhooks(session, older_than)
                 if job_states.take_unsent_webhook(session, job_id)]
    sent = []
    for job_id in taken:
        if send_webhook(job_id):
            log.warning("sent the webhook of job %s: its hand-off was owed", job_id)
            sent.append(job_id)
            continue
        with session_scope(settings.database_url) as session:
            job_states.forget_webhook_send(session, job_id)
    return sent


def _send_all(settings: Settings, jobs: list[tuple[str, str]], send: Send, what: str) -> list[str]:
    """Send each job (after the commit: the delivery must find it queued), then mark it sent.

    A send that fails leaves the job owed: the next sweep, here or anywhere, tries again.
    """
    sent = []
    for job_id, device in jobs:
        try:
            send(job_id, device)
        except Exception:  # noqa: BLE001 - a broker blip: the job stays owed its message
            log.warning("could not send job %s; the next sweep tries again", job_id, exc_info=True)
            continue
        with session_scope(settings.database_url) as session:
            job_states.mark_enqueued(session, job_id)
        log.warning(what, job_id)
        sent.append(job_id)
    return sent


def requeue_orphans(settings: Settings, send: Send | None = None, *,
                    sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Requeue the running jobs a stopped service left, never one whose worker still beats.

    For the embedded server, before its one worker starts. A job that beat within the last
    few heartbeat intervals may still have a live worker (an orphaned process of an earlier
    run): wait until its heartbeat is that old; if it still beats then, it is left to its
    worker (the heartbeat sweep takes it the moment it stops).
    """
    window = 3 * settings.heartbeat_interval_s
    with session_scope(settings.database_url) as session:
        newest = job_states.newest_running_heartbeat(session)
    if newest is not None:
        wait = window - (utcnow() - newest).total_seconds()
        if wait > 0:
            sleep(min(wait, window))
    return sweep(settings, running_stale_s=window, send=send)
