"""The queue contract: Celery configuration, the task name, the queues, the routing rule, ``enqueue_job``.

This is the app floor's side of the broker, so the API sends jobs without importing the
worker; ``worker.celery_app`` builds the consuming Celery app from ``celery_config`` here
(worker imports app, never the reverse). Light: no torch, no ``lelp.pipeline``.

Reliability choices (see docs/ARCHITECTURE.md):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  after the job ran, so a worker that dies hands it back (Redis does so after the
  visibility timeout; the heartbeat sweep catches the rest).
- prefetch 1: a worker never sits on a second long job while running the first.
- JSON only and no result backend: the job's state lives in the database.
- The Redis visibility timeout is longer than the job time limit, otherwise Redis would
  hand a job that is still training to a second worker.

Routing (docs/API.md, "Where a job runs"): ``device: gpu`` goes to the ``gpu`` queue;
``device: auto`` goes there too when a live GPU worker consumes it and the student kind
gains from a GPU (``GPU_KINDS``); everything else goes to ``cpu``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from kombu import Queue
from sqlalchemy.orm import Session

from app.settings import Settings, get_settings
from lelp.students.registry import kinds_where

TASK_NAME = "lelp.run_job"
# Build a stored model's missing ONNX packages (worker.exports.build_model_exports): the API never builds one.
EXPORT_TASK_NAME = "lelp.build_exports"
# Deliver a finished job's webhook (worker.webhooks), retried with backoff by the worker.
WEBHOOK_TASK_NAME = "lelp.deliver_webhook"
QUEUES = ("cpu", "gpu")
# Student kinds that gain from a GPU (``gains_from_gpu`` in lelp.students.registry, torch-free):
# dense matmuls over an encoder; the table students train on sparse lookups at CPU speed.
GPU_KINDS = frozenset(kinds_where(gains_from_gpu=True))


def transport_options(broker_url: str, job_time_limit_s: int) -> dict[str, Any]:
    """Redis/SQS redeliver unacknowledged messages after ``visibility_timeout``: make it outlast a job.

    Other transports take no such option (the SQLAlchemy one passes its options to
    ``create_engine``, which refuses unknown keywords).
    """
    if broker_url.split("://", 1)[0] in ("redis", "rediss", "sentinel", "sqs"):
        return {"visibility_timeout": job_time_limit_s + 3600}
    return {}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The whole Celery configuration, derived from the service settings (sender and worker alike)."""
    hard_limit = int(settings.job_time_limit_s)
    # The soft limit fires first so the task records a clean "time_limit_exceeded" error.
    soft_limit = max(1, hard_limit - min(300, max(1, hard_limit // 10)))
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options(settings.broker_url, hard_limit),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_time_limit": hard_limit,
        "task_soft_time_limit": soft_limit,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_default_queue": "cpu",
        "task_routes": {TASK_NAME: {"queue": "cpu"}, EXPORT_TASK_NAME: {"queue": "cpu"},
                        WEBHOOK_TASK_NAME: {"queue": "cpu"}},
        # Keep training through a broker blip: a duplicate delivery is refused by the
        # job claim, so cancelling hours of work would gain nothing.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


def make_celery(settings: Settings | None = None, include: list[str] | None = None,
                set_as_current: bool = True) -> Celery:
    """A Celery app configured from ``settings`` (read lazily from the environment by default).

    ``include`` names the task modules a consuming app loads (the worker passes its own).
    """
    app = Celery("lelp", include=include or [], set_as_current=set_as_current)
    if settings is not None:
        app.conf.update(celery_config(settings))
    else:
        # Evaluated when the configuration is first used, not at import time, so that
        # processes (and tests) may set LELP_* variables after importing this module.
        app.add_defaults(lambda: celery_config(get_settings()))
    return app


# The sending app: knows no tasks (it sends by name), and never becomes Celery's "current
# app", which in a worker process is the consuming one.
celery_app = make_celery(set_as_current=False)


def gains_from_gpu(kind: str | None) -> bool:
    return kind in GPU_KINDS


def queue_for(device: str | None, kind: str | None = None, gpu_worker_alive: bool = False) -> str:
    """The routing rule: ``gpu`` for GPU jobs and for ``auto`` jobs a live GPU worker would speed up."""
    if device == "gpu":
        return "gpu"
    if device == "auto" and gpu_worker_alive and gains_from_gpu(kind):
        return "gpu"
    return "cpu"


def gpu_worker_alive(session: Session, settings: Settings) -> bool:
    """A worker beat within ``heartbeat_stale_s`` that consumes ``gpu`` and sees a CUDA device."""
    from app.db import repositories as repo
    from app.db.base import utcnow

    since = utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
    return any("gpu" in worker.queues and any(d.startswith("cuda") for d in worker.devices)
               for worker in repo.live_workers(session, since))


def most_gpus_on_a_worker(session: Session, settings: Settings) -> int:
    """The most CUDA devices one live worker that consumes ``gpu`` sees (0: no GPU worker).
    A job's DDP ranks all run on one worker, so this bounds ``hyperparameters.gpus``."""
    from app.db import repositories as repo
    from app.db.base import utcnow

    since = utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
    return max((sum(d.startswith("cuda") for d in worker.devices)
                for worker in repo.live_workers(session, since) if "gpu" in worker.queues), default=0)


def route(session: Session, settings: Settings, device: str | None, kind: str | None) -> str:
    """``queue_for`` with the workers table read only where it can change the answer."""
    alive = device == "auto" and gains_from_gpu(kind) and gpu_worker_alive(session, settings)
    return queue_for(device, kind, alive)


def enqueue_job(job_id: str, device: str | None = "cpu", queue: str | None = None) -> None:
    """Send the job id (and nothing else) to ``queue``, by default the one ``device`` alone picks."""
    celery_app.send_task(TASK_NAME, args=[job_id], queue=queue or queue_for(device))


def enqueue_webhook(job_id: str, countdown: float | None = None) -> None:
    """Ask a worker to deliver the finished job's webhook (``lelp.deliver_webhook``)."""
    celery_app.send_task(WEBHOOK_TASK_NAME, args=[job_id], queue="cpu", countdown=countdown)


def enqueue_export(model_id: str) -> None:
    """Ask a worker to build the model's missing ONNX packages (``lelp.build_exports``)."""
    celery_app.send_task(EXPORT_TASK_NAME, args=[model_id], queue="cpu")


# A key the recovery sweep keeps in the broker's own Redis database: it vanishes with the
# messages when Redis restarts without persistence (or is flushed), which tells the sweep that
# every queued job lost its message. Other transports keep no such mark (see ``broker_emptied``).
BROKER_MARK_KEY = "lelp:broker-mark"
REDIS_SCHEMES = ("redis", "rediss")


def _on_redis(broker_url: str) -> bool:
    return broker_url.split("://", 1)[0] in REDIS_SCHEMES


def _redis(broker_url: str):  # noqa: ANN202 - redis.Redis, imported lazily (the API may run without it)
    import redis

    return redis.Redis.from_url(broker_url, socket_connect_timeout=5, socket_timeout=5)


def broker_emptied(broker_url: str) -> bool:
    """True when a Redis broker holds no mark: it restarted empty (or is new), its messages are gone.

    False for other transports (the sweep's ``queued_stale_s`` re-send covers them). Raises
    when the broker does not answer (nothing can be sent then anyway; the sweep asks again).
    """
    if not _on_redis(broker_url):
        return False
    client = _redis(broker_url)
    try:
        return not client.exists(BROKER_MARK_KEY)
    finally:
        client.close()


@dataclass(frozen=True)
class BrokerMessages:
    """The job messages a Redis broker would still hand a worker.

    ``waiting``: job ids with a message on a queue's list. ``reserved_at``: job ids whose message a
    worker took and has not acknowledged (kombu's ``unacked`` hash), with the latest time one was
    taken (its ``unacked_index``). With ``task_acks_late`` a running job's message stays reserved
    while it runs; a *queued* job's reservation that ages is a message nobody is running: its
    worker dropped it (Celery clears the messages it reserved when its broker link breaks, and
    kombu's hand-back fails while the broker is away), or holds it behind a long job.
    """

    waiting: frozenset[str]
    reserved_at: dict[str, float]


UNACKED_KEY, UNACKED_INDEX_KEY = "unacked", "unacked_index"  # kombu's Redis transport defaults
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis transport: "cpu", "cpu\x06\x163", ... one list per priority
_READ_CHUNK = 500


def _job_of(raw: bytes) -> str | None:
    """The job id a ``lelp.run_job`` message carries (None for other tasks or a message we cannot read)."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # unacked entries are [message, exchange, routing_key]
            message = message[0]
        if message.get("headers", {}).get("task") != TASK_NAME:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def job_messages(broker_url: str) -> BrokerMessages | None:
    """Read which jobs a Redis broker holds a message for (None for other transports).

    Reads the queues' lists in chunks (a long backlog is never one reply) and the reserved
    messages; raises when the broker does not answer.
    """
    if not _on_redis(broker_url):
        return None
    client = _redis(broker_url)
    try:
        waiting: set[str] = set()
        keys = [k for q in QUEUES for k in client.scan_iter(match=f"{q}*", count=500)
                if k.decode(errors="replace").split(PRIORITY_SEPARATOR)[0] in QUEUES]
        for key in keys:
            if client.type(key) != b"list":
                continue
            start = 0
            while chunk := client.lrange(key, start, start + _READ_CHUNK - 1):
                waiting.update(j for j in map(_job_of, chunk) if j)
                start += _READ_CHUNK
        taken = dict(client.zrange(UNACKED_INDEX_KEY, 0, -1, withscores=True))
        reserved_at: dict[str, float] = {}
        for tag, raw in client.hscan_iter(UNACKED_KEY, count=_READ_CHUNK):
            job_id = _job_of(raw)
            if job_id:
                reserved_at[job_id] = max(reserved_at.get(job_id, 0.0), float(taken.get(tag, 0.0)))
        return BrokerMessages(frozenset(waiting), reserved_at)
    finally:
        client.close()


def mark_broker(broker_url: str) -> None:
    """Set the mark ``broker_emptied`` looks for, once the queued jobs are owed their messages again."""
    if not _on_redis(broker_url):
        return
    client = _redis(broker_url)
    try:
        client.set(BROKER_MARK_KEY, "1")
    finally:
        client.close()
