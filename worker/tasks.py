"""The Celery task: thin, so the job flow itself (``worker.runner``) runs without Celery.

Retry policy: no automatic retries on exceptions (a failed job records ``{code,
message}`` and stays failed). A job is delivered again only when its worker was lost
(``reject_on_worker_lost``) or the sweeper requeued it; ``job_max_attempts`` bounds both.
Time limits come from the app configuration (``task_time_limit`` / ``task_soft_time_limit``).
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutdown

from app.queue import EXPORT_TASK_NAME, WEBHOOK_TASK_NAME
from app.services.sweeper import SweeperThread
from app.settings import get_settings
from worker.celery_app import TASK_NAME, celery_app
from worker.registry import WorkerRegistration
from worker.runner import run_job

log = logging.getLogger("lelp.worker")
_sweeper: SweeperThread | None = None
_registration: WorkerRegistration | None = None


@celery_app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
                 max_retries=0)
def run_job_task(job_id: str) -> str:
    """Run one delivery of a job; the job row, not a Celery result, holds the outcome."""
    status = run_job(job_id, get_settings())
    log.info("job %s -> %s", job_id, status)
    return status


@celery_app.task(name=EXPORT_TASK_NAME, acks_late=True, ignore_result=True, max_retries=0)
def build_exports_task(model_id: str) -> int:
    """Build a stored model's missing ONNX packages (asked for by the API, which never builds one)."""
    from worker.exports import build_model_exports

    built = build_model_exports(get_settings(), model_id)
    log.info("model %s: %d ONNX package(s) built", model_id, len(built))
    return len(built)


@celery_app.task(name=WEBHOOK_TASK_NAME, bind=True, acks_late=True, ignore_result=True)
def deliver_webhook_task(self, job_id: str) -> str:  # noqa: ANN001 - self: the bound Celery task
    """One try of a finished job's webhook (``worker.webhooks.deliver``); a failed try is retried with
    exponential backoff (Celery's task retry) until ``webhook_max_attempts`` tries."""
    from worker.webhooks import deliver

    settings = get_settings()
    outcome = deliver(settings, job_id, attempt=self.request.retries + 1)
    if outcome.result == "retry":
        raise self.retry(countdown=outcome.retry_in_s, max_retries=settings.webhook_max_attempts - 1)
    return outcome.result


def _consumed_queues(consumer: object) -> list[str]:
    queues = getattr(getattr(consumer, "task_consumer", None), "queues", None) or []
    return [q.name for q in queues]


@worker_ready.connect
def _start_sweeper(sender: object = None, **_: object) -> None:
    global _sweeper, _registration
    settings = get_settings()
    _sweeper = SweeperThread(settings).start()
    hostname = str(getattr(sender, "hostname", None) or celery_app.conf.get("worker_name") or "worker")
    try:
        _registration = WorkerRegistration(settings, hostname, _consumed_queues(sender)).start()
    except Exception:  # the registry is advisory: a worker that cannot write it still runs jobs
        log.warning("could not register worker %s", hostname, exc_info=True)


@worker_shutdown.connect
def _stop_sweeper(**_: object) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _registration is not None:
        _registration.stop()
