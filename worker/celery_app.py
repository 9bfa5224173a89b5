"""The worker's Celery app: the queue contract of ``app.queue`` plus this package's tasks.

The configuration, the task name, the queues and the routing rule live on the app floor
(``app.queue``) so the API sends jobs without importing the worker; this module only adds
``worker.tasks`` to what the app consumes. ``celery -A worker.celery_app:celery_app worker``
(``worker.cli.worker_command``) starts it. Light: no torch, no ``lelp.pipeline``.
"""

from __future__ import annotations

from app.queue import QUEUES, TASK_NAME, celery_config, enqueue_job, make_celery, queue_for

__all__ = ["QUEUES", "TASK_NAME", "celery_app", "celery_config", "enqueue_job", "make_celery", "queue_for"]

celery_app = make_celery(include=["worker.tasks"])
