"""Jobs: submit (check, insert, enqueue after commit: one call), cancel (and its clean-up), events.

Idempotency: a request with an ``Idempotency-Key`` is stored with the hash of its body.
The same key with the same body returns the same job (nothing is enqueued again); the
same key with another body is a 409. The tenant row is locked while a job is created, so
the active-jobs limit and the key check hold under concurrent requests.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import job_states
from app.db import repositories as repo
from app.db.base import new_id, utcnow
from app.db.models import ACTIVE_STATUSES, Job, JobStatus
from app.errors import Conflict, TooManyRequests
from app.queue import enqueue_job, route
from app.schemas.jobs import JobCreate
from app.services.base_models import resolve_student_base
from app.services.job_checks import check_job
from app.services.webhooks import check_webhook_url, hand_off
from app.settings import Settings
from app.storage import ArtifactStore, StorePaths

log = logging.getLogger(__name__)

Enqueue = Callable[[Job], None]


def request_hash(body: JobCreate) -> str:
    """Hash of the normalised body: key order and spelled-out defaults do not change it."""
    data = body.model_dump(mode="json")
    if data.get("name") is None:  # a body without a name hashes as it did before jobs had names
        data.pop("name", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Job, digest: str) -> Job:
    if existing.request_hash != digest:
        raise Conflict("this Idempotency-Key was already used with a different request body",
                       param="Idempotency-Key", code="idempotency_key_reused")
    return existing


def submit_job(session: Session, settings: Settings, tenant_id: str, body: JobCreate, idempotency_key: str | None,
               store: ArtifactStore | None = None, send: Enqueue | None = None) -> tuple[Job, bool]:
    """The whole submit: check the body, insert the queued job (committed), then hand it to the broker.

    Returns ``(job, created)``: False for an idempotent replay, which is not enqueued again.
    ``send`` defaults to ``routed_enqueuer`` (the API's dependency lets tests swap it).
    """
    job, created = create_job(session, settings, tenant_id, body, idempotency_key, store)
    if created:
        enqueue_after_commit(session, job, routed_enqueuer(session, settings) if send is None else send)
    return job, created


def create_job(session: Session, settings: Settings, tenant_id: str, body: JobCreate,
               idempotency_key: str | None, store: ArtifactStore | None = None) -> tuple[Job, bool]:
    """Insert a queued job (committed); returns ``(job, created)``: False for a replay.

    ``store`` is needed when ``student.base`` is a URI: it is registered as a base model.
    """
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = repo.get_job_by_idempotency_key(session, tenant_id, idempotency_key)
        if existing is not None:
            session.commit()  # return the connection now (see app.deps.get_tenant): the reply still waits
            return _replay(existing, digest), False
    check_job(session, settings, tenant_id, body)  # before the lock: a refusal holds nothing
    if body.webhook_url is not None:
        check_webhook_url(body.webhook_url, settings)
    session.commit()  # end the read; an input deleted from here on fails the job as missing_input
    student = body.student.model_dump(exclude_none=True)
    if body.student.base:  # outside the lock too: registering a URI copies a whole model
        student["base"] = resolve_student_base(session, store or ArtifactStore(settings.artifact_url), settings,
                                               tenant_id, body.student.base)
    repo.lock_tenant(session, tenant_id)
    if idempotency_key is not None:  # re-check under the lock: a twin request may have just committed
        existing = repo.get_job_by_idempotency_key(session, tenant_id, idempotency_key)
        if existing is not None:
            session.commit()  # releases the lock; a rollback would expire ``existing`` and reload it later
            return _replay(existing, digest), False
    active = repo.count_active_jobs(session, tenant_id)
    if active >= settings.max_concurrent_jobs_per_tenant:
        session.rollback()
        raise TooManyRequests(
            f"{active} jobs are queued or running; the limit per tenant is "
            f"{settings.max_concurrent_jobs_per_tenant}: wait for one to finish or cancel one",
            code="too_many_jobs")
    now = utcnow()
    job = Job(
        id=new_id("job"), tenant_id=tenant_id, name=body.name, teacher_id=body.teacher_id,
        train_dataset_id=body.train_dataset_id,
        eval_dataset_id=body.eval_dataset_id, validation_dataset_id=body.validation_dataset_id,
        method=body.method, student=student,
        device=body.device, hyperparameters=body.hyperparameters.model_dump(exclude_none=True),
        status=JobStatus.QUEUED,
        progress={"stage": "queued"}, attempts=0, cancel_requested=False, idempotency_key=idempotency_key,
        request_hash=digest, created_at=now, updated_at=now, webhook_url=body.webhook_url,
    )
    session.add(job)
    try:
        session.flush()
        repo.add_event(session, job.id, "created", "job created and queued",
                       {"method": job.method, "device": job.device})
        session.commit()
    except IntegrityError:
        # Only the (tenant, key) unique constraint can clash: a concurrent twin won (SQLite has no row lock).
        session.rollback()
        existing = repo.get_job_by_idempotency_key(session, tenant_id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        session.commit()
        return _replay(existing, digest), False
    return job, True


def routed_enqueuer(session: Session, settings: Settings) -> Enqueue:
    """The API's enqueuer: routes by ``app.queue.route`` (reads the workers table for ``auto`` jobs)."""

    def send(job: Job) -> None:
        queue = route(session, settings, job.device, (job.student or {}).get("kind"))
        session.commit()  # end the read: the connection goes back before the broker is called
        log.info("job %s (device %s) -> queue %s", job.id, job.device, queue)
        enqueue_job(job.id, job.device, queue)

    return send


def send_job(job_id: str, device: str) -> None:
    """Send a job id to the queue its device alone picks (the recovery sweep's re-sends)."""
    enqueue_job(job_id, device)


def enqueue_after_commit(session: Session, job: Job, send: Enqueue) -> None:
    """Enqueue, then mark the job sent (its outbox entry done).

    A broker failure leaves the job queued and owed its message, with an event; so does a
    process that dies between its commit and its send: the recovery sweep sends it within
    ``enqueue_grace_s + sweep_interval_s`` (``app.services.recovery``).
    """
    try:
        send(job)
    except Exception as exc:  # noqa: BLE001 - any broker failure must not lose the committed job
        log.warning("could not enqueue job %s: %s", job.id, exc)
        repo.add_event(session, job.id, "enqueue_failed", f"the broker did not take the job: {type(exc).__name__}")
        session.commit()
        return
    job_states.mark_enqueued(session, job.id)
    session.commit()


def events_page(session: Session, job_id: str, *, after: int | None, limit: int) -> dict:
    """One page of a job's events, oldest first, as the ``Page`` body (the cursor is the last event's id)."""
    rows = repo.list_events(session, job_id, after=after, limit=limit)
    session.commit()  # end the read: the connection goes back before the response waits for a thread
    has_more = len(rows) > limit
    data = rows[:limit]
    return {"data": data, "has_more": has_more, "next_cursor": str(data[-1].id) if has_more and data else None}


def cancel_job(session: Session, job: Job, store: ArtifactStore | None = None) -> Job:
    """Cancel a queued job now; ask a running one to stop; a finished job is a 409 (except cancelled).

    A job cancelled here drops its checkpoints from ``store`` (a requeued job may have left some);
    a running one's worker cleans up when it stops.
    """
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise Conflict(f"the job already {job.status}", code="job_finished")
    if job.status in ACTIVE_STATUSES:
        job_states.request_cancel(session, job.id)
        session.commit()
        session.refresh(job)
        session.commit()  # the refresh began a read: end it so the connection goes back
        if job.webhook_state == "pending":  # cancelled here (it was queued): its webhook is owed now
            hand_off(session, job.id)
            session.refresh(job)
            session.commit()
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):  # it finished while we were cancelling
        raise Conflict(f"the job already {job.status}", code="job_finished")
    if job.status == JobStatus.CANCELLED and store is not None:
        store.delete(StorePaths.checkpoints(job.id))
    return job


def retry_body(job: Job) -> JobCreate:
    """The submit body that runs ``job`` again with the same inputs and settings.

    A job that is still queued or running is a 409 (cancel it first); one whose teacher or
    dataset was deleted since is a 409 too (``SET NULL`` left no id to reuse). The new job is
    checked like any submission, so an input that no longer fits is refused, not failed later.
    """
    if job.status in ACTIVE_STATUSES:
        raise Conflict(f"the job is still {job.status}: cancel it first, or wait for it to finish",
                       code="job_not_finished")
    if job.teacher_id is None or job.train_dataset_id is None:
        missing = "teacher" if job.teacher_id is None else "train dataset"
        raise Conflict(f"the job's {missing} was deleted: submit a new job instead", code="input_deleted")
    return JobCreate(name=job.name, teacher_id=job.teacher_id, train_dataset_id=job.train_dataset_id,
                     eval_dataset_id=job.eval_dataset_id, validation_dataset_id=job.validation_dataset_id,
                     method=job.method, student=dict(job.student or {}),
                     device=job.device, hyperparameters=dict(job.hyperparameters or {}))
