"""Deliver a finished job's webhook: one signed POST per try, each try a job event (``webhook``).

The contract (allowed hosts, payload, signature) is ``app.services.webhooks``; the Celery task
that calls ``deliver`` and retries it with backoff is in ``worker.tasks``. A delivery is owed
when ``jobs.webhook_state`` is ``pending`` (set with the final state); it ends ``delivered`` on a
2xx answer, ``failed`` after ``LELP_WEBHOOK_MAX_ATTEMPTS`` tries or when the host is no longer
allowed (then nothing is called).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.db import job_states
from app.db import repositories as repo
from app.db.models import Job
from app.db.session import session_scope
from app.services import webhooks
from app.settings import Settings

log = logging.getLogger("lelp.worker")


@dataclass
class Outcome:
    """One try: ``delivered``, ``retry`` (after ``retry_in_s``), ``gave_up`` or ``skipped`` (nothing owed)."""

    result: str
    retry_in_s: float | None = None


def backoff_s(settings: Settings, attempt: int) -> float:
    """The wait after try ``attempt`` (1-based): ``webhook_backoff_s * 2 ** (attempt - 1)``, at most an hour."""
    return min(settings.webhook_backoff_s * 2 ** (attempt - 1), 3600.0)


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int | None, str | None]:
    """(status code, None) or (None, why it failed); redirects are answers, not followed."""
    import httpx

    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"
    return response.status_code, None


def deliver(settings: Settings, job_id: str, attempt: int) -> Outcome:
    """Try once to POST the job's final state to its webhook; records the try as a job event."""
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        if job is None or job.webhook_url is None or job.webhook_state != "pending":
            return Outcome("skipped")
        url, event = job.webhook_url, webhooks.event_type(job.status)
        problem = webhooks.webhook_problem(url, settings)
        if problem is not None:  # allowed at submit, no longer: nothing is called
            job_states.end_webhook(session, job_id, "failed")
            repo.add_event(session, job_id, "webhook", f"{event} not sent: {problem}",
                           {"event": event, "attempt": attempt, "delivered": False, "gave_up": True,
                            "error": "host_not_allowed"})
            return Outcome("gave_up")
        body = webhooks.body_bytes(webhooks.payload(job))
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "lelp-distill-webhooks",
               webhooks.EVENT_HEADER: event, webhooks.DELIVERY_HEADER: f"whk_{job_id}",
               webhooks.ATTEMPT_HEADER: str(attempt),
               webhooks.SIGNATURE_HEADER: webhooks.sign(settings.webhook_secret or "", timestamp, body)}
    start = time.perf_counter()
    status, error = _post(url, body, headers, settings.webhook_timeout_s)
    seconds = round(time.perf_counter() - start, 3)
    delivered = status is not None and 200 <= status < 300
    last = attempt >= settings.webhook_max_attempts
    data = {"event": event, "attempt": attempt, "host": urlsplit(url).netloc, "status_code": status,
            "delivered": delivered, "seconds": seconds}
    if error is not None:
        data["error"] = error
    answer = f"HTTP {status}" if status is not None else error
    if delivered:
        state, message, outcome = "delivered", f"{event} delivered (try {attempt}, {answer})", Outcome("delivered")
    elif last:
        data["gave_up"] = True
        state, outcome = "failed", Outcome("gave_up")
        message = f"{event} not delivered (try {attempt} of {attempt}, {answer}); no more tries"
    else:
        wait = backoff_s(settings, attempt)
        data["retry_in_s"] = wait
        state, outcome = "pending", Outcome("retry", wait)
        message = f"{event} not delivered (try {attempt} of {settings.webhook_max_attempts}, {answer}); " \
                  f"next try in {wait:g} s"
    with session_scope(settings.database_url) as session:
        job_states.end_webhook(session, job_id, state)
        repo.add_event(session, job_id, "webhook", message, data)
    log.info("job %s webhook try %d: %s", job_id, attempt, outcome.result)
    return outcome


def owe(settings: Settings, job_id: str) -> None:
    """After a job's final state is committed: hand its pending webhook, if any, to a worker."""
    try:
        with session_scope(settings.database_url) as session:
            job = session.get(Job, job_id)
            if job is not None and job.webhook_state == "pending" and job.webhook_sent_at is None:
                webhooks.hand_off(session, job_id)
    except Exception:  # noqa: BLE001 - the job is finished either way; the recovery sweep sends it
        log.warning("could not hand the webhook of job %s to a worker", job_id, exc_info=True)
