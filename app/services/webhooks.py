"""Webhooks: a job's final state POSTed to a URL it named, signed, on hosts the operator allowed.

What OpenAI's jobs API does for fine-tuning (``fine_tuning.job.succeeded|failed|cancelled``):
a user's own system learns that a job ended without polling. The rules:

- **Allowed hosts only.** ``webhook_url`` must be ``http(s)://`` on a host (or ``host:port``) of
  ``LELP_WEBHOOK_ALLOWED_HOSTS``, with no user info; anything else is a 422 ``webhook_not_allowed``
  at submit, and the worker checks again before each try (a host removed since is not called).
  Redirects are not followed: nothing but the named URL is ever called.
- **Signed.** ``X-Lelp-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` with
  ``LELP_WEBHOOK_SECRET`` (``verify_signature`` is the receiver's side; docs/API.md shows it).
- **Owed once, retried.** Moving a job to its final state marks its delivery ``pending`` in the
  same UPDATE (``app.db.job_states.WEBHOOK_OWED``); the worker's ``lelp.deliver_webhook`` task
  POSTs it, retried with exponential backoff (``LELP_WEBHOOK_BACKOFF_S`` doubling, at most
  ``LELP_WEBHOOK_MAX_ATTEMPTS`` tries); every try is a job event ``webhook``.

This module is the contract (checks, payload, signature) and is light: the API imports it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.db import job_states
from app.db.models import Job
from app.errors import Unprocessable
from app.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Lelp-Signature"
EVENT_HEADER = "X-Lelp-Event"
DELIVERY_HEADER = "X-Lelp-Delivery"
ATTEMPT_HEADER = "X-Lelp-Attempt"
# The job's metrics a payload carries (the headline figures; the full ones are GET /v1/jobs/{id}).
PAYLOAD_METRICS = ("method", "agreement", "eval_rows", "validation_metric")


def webhook_problem(url: str, settings: Settings) -> str | None:
    """Why ``url`` may not be called (a sentence), or None when it may."""
    if not settings.webhook_allowed_hosts:
        return "webhooks are off on this server (the operator allows no host: LELP_WEBHOOK_ALLOWED_HOSTS)"
    if not settings.webhook_secret:
        return "webhooks are off on this server (no signing secret: LELP_WEBHOOK_SECRET)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"webhook_url {url[:200]!r} is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook_url must be an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "webhook_url must not carry a user name or password"
    host = parts.hostname.lower()
    allowed = set(settings.webhook_allowed_hosts)
    if host not in allowed and (port is None or f"{host}:{port}" not in allowed):
        return (f"webhook_url's host {host if port is None else f'{host}:{port}'!r} is not one the operator "
                f"allows: {', '.join(sorted(allowed))}")
    return None


def check_webhook_url(url: str, settings: Settings) -> None:
    """At submit: a URL that may not be called is a 422 (the job is not created)."""
    problem = webhook_problem(url, settings)
    if problem is not None:
        raise Unprocessable(problem, param="webhook_url", code="webhook_not_allowed")


def event_type(status: str) -> str:
    return f"job.{status}"


def payload(job: Job) -> dict[str, Any]:
    """The body: ``{"id", "type", "created_at", "data": {the job's final state}}``."""
    metrics = job.metrics or {}
    summary = {key: metrics[key] for key in PAYLOAD_METRICS if key in metrics}
    for side in ("student", "teacher"):
        if isinstance(metrics.get(side), dict):
            summary[side] = {k: metrics[side].get(k) for k in ("accuracy", "macro_f1", "sentences_per_second")}
    finished = job.finished_at.isoformat() if job.finished_at else None
    return {
        "id": f"whk_{job.id}", "type": event_type(job.status), "created_at": finished,
        "data": {"id": job.id, "object": "job", "status": job.status, "method": job.method,
                 "teacher_id": job.teacher_id, "train_dataset_id": job.train_dataset_id,
                 "eval_dataset_id": job.eval_dataset_id, "model_id": job.model_id, "error": job.error,
                 "metrics": summary or None, "attempts": job.attempts,
                 "created_at": job.created_at.isoformat() if job.created_at else None, "finished_at": finished},
    }


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Lelp-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, *, tolerance_s: float = 300,
                     now: float | None = None) -> bool:
    """What a receiver does: recompute the HMAC over ``"<t>.<raw body>"``, compare in constant time,
    and refuse a timestamp older than ``tolerance_s`` (a replayed delivery)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


def send_webhook(job_id: str) -> bool:
    """Hand the owed delivery to a worker (``lelp.deliver_webhook``); False when the broker refused it
    (logged, not raised: the job's state is already committed, and the recovery sweep sends it later)."""
    from app.queue import enqueue_webhook

    try:
        enqueue_webhook(job_id)
    except Exception:  # noqa: BLE001 - the job is finished either way
        log.warning("could not hand the webhook of job %s to a worker; the sweep will", job_id, exc_info=True)
        return False
    return True


def hand_off(session: Session, job_id: str) -> bool:
    """After the commit that owed it: send the delivery, then mark it sent (a transactional outbox)."""
    if not send_webhook(job_id):
        return False
    job_states.mark_webhook_sent(session, job_id)
    session.commit()
    return True
