"""/v1/jobs"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from app.db.models import Job, JobStatus
from app.deps import EnqueueDep, JobDep, SessionDep, SettingsDep, StoreDep, TenantDep
from app.schemas.common import ERROR_RESPONSES, ErrorBody, Page
from app.schemas.jobs import JobCreate, JobEventRead, JobRead
from app.services import jobs as service
from app.services.pagination import list_page

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
                                              description="Any visible ASCII, up to 255 characters")]


@router.post("", status_code=202, response_model=JobRead,
             responses={409: {"model": ErrorBody, "description": "Idempotency-Key reused with another body"},
                        429: {"model": ErrorBody, "description": "Too many queued or running jobs"}})
def create_job(body: JobCreate, response: Response, session: SessionDep, tenant: TenantDep, settings: SettingsDep,
               store: StoreDep, enqueue: EnqueueDep, idempotency_key: IdempotencyKey = None) -> Job:
    """Submit a distillation job; a body that could not run is refused here (4xx), not failed later."""
    job, created = service.submit_job(session, settings, tenant.id, body, idempotency_key, store, enqueue)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("", response_model=Page[JobRead])
def list_jobs(session: SessionDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
              after: Annotated[str | None, Query(max_length=200)] = None,
              status: JobStatus | None = None) -> dict:
    """List your jobs, newest first, optionally by status."""
    return list_page(session, Job, tenant.id, limit, after, status=status)


@router.get("/{job_id}", response_model=JobRead)
def get_job(job: JobDep) -> Job:
    """A job's status, progress, metrics, error and model id."""
    return job


@router.post("/{job_id}/cancel", status_code=202, response_model=JobRead,
             responses={409: {"model": ErrorBody, "description": "The job already finished"}})
def cancel_job(job: JobDep, session: SessionDep, store: StoreDep) -> Job:
    """Cancel a job: at once if queued; a running job stops at its next check."""
    return service.cancel_job(session, job, store)


@router.post("/{job_id}/retry", status_code=202, response_model=JobRead,
             responses={409: {"model": ErrorBody, "description": "The job is still queued or running, or an input "
                                                                 "was deleted"},
                        429: {"model": ErrorBody, "description": "Too many queued or running jobs"}})
def retry_job(job: JobDep, response: Response, session: SessionDep, tenant: TenantDep, settings: SettingsDep,
              store: StoreDep, enqueue: EnqueueDep, idempotency_key: IdempotencyKey = None) -> Job:
    """Submit a new job with the same inputs, method, student, device and hyperparameters as a finished one."""
    body = service.retry_body(job)
    session.commit()  # end the read of the old job before the new one is checked and created
    new, created = service.create_job(session, settings, tenant.id, body, idempotency_key, store)
    if created:
        service.enqueue_after_commit(session, new, enqueue)
    else:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{new.id}"
    return new


@router.get("/{job_id}/events", response_model=Page[JobEventRead])
def list_job_events(job: JobDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    after: Annotated[int | None, Query(ge=0)] = None) -> dict:
    """A job's events, oldest first; pass ``next_cursor`` as ``after`` for more."""
    return service.events_page(session, job.id, after=after, limit=limit)
