"""The Celery application and ``enqueue_job``: light enough for the API to import.

This module must not import torch or ``lelp.pipeline``: the API process imports it to
send tasks, and only the worker process loads ``worker.tasks`` (through ``include=``).

Reliability choices (see docs/ARCHITECTURE.md; the spec, ../shared/DESIGN.md section 4, is outside the repository):
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  after the job ran, so a worker that dies hands it back (Redis does so after the
  visibility timeout; the heartbeat sweeper in ``worker.sweeper`` catches the rest).
- prefetch 1: a worker never sits on a second long job while running the first.
- JSON only and no result backend: the job's state lives in the database.
- The Redis visibility timeout is longer than the job time limit, otherwise Redis would
  hand a job that is still training to a second worker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from app.settings import Settings, get_settings

TASK_NAME = "lelp.run_job"
QUEUES = ("cpu", "gpu")


def transport_options(broker_url: str, job_time_limit_s: int) -> dict[str, Any]:
    """Redis/SQS redeliver unacknowledged messages after ``visibility_timeout``: make it outlast a job.

    Other transports take no such option (the SQLAlchemy one passes its options to
    ``create_engine``, which refuses unknown keywords).
    """
    if broker_url.split("://", 1)[0] in ("redis", "rediss", "sentinel", "sqs"):
        return {"visibility_timeout": job_time_limit_s + 3600}
    return {}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The whole Celery configuration, derived from the service settings."""
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
        "task_routes": {TASK_NAME: {"queue": "cpu"}},
        # Keep training through a broker blip: a duplicate delivery is refused by the
        # job claim in worker.runner, so cancelling hours of work would gain nothing.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app configured from ``settings`` (read lazily from the environment by default)."""
    app = Celery("lelp", include=["worker.tasks"])
    if settings is not None:
        app.conf.update(celery_config(settings))
    else:
        # Evaluated when the configuration is first used, not at import time, so that
        # processes (and tests) may set LELP_* variables after importing this module.
        app.add_defaults(lambda: celery_config(get_settings()))
    return app


celery_app = make_celery()


def queue_for(device: str | None) -> str:
    """GPU jobs go to the ``gpu`` queue (consumed by GPU workers only); the rest to ``cpu``."""
    return "gpu" if device == "gpu" else "cpu"


def enqueue_job(job_id: str, device: str | None = "cpu") -> None:
    """Send the job id (and nothing else) to the queue matching the job's device."""
    celery_app.send_task(TASK_NAME, args=[job_id], queue=queue_for(device))
