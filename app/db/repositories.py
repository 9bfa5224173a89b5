"""Queries, one function each, shared by the API services and the worker.

Every read the API makes is scoped by ``tenant_id``: a row of another tenant is simply
not found. A job's state changes live in ``app.db.job_states`` (the state machine), not
here. Nothing here commits: the request or the task does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db.base import new_id, utcnow
from app.db.models import (
    ACTIVE_STATUSES,
    ApiKey,
    BaseModelRow,
    Dataset,
    Job,
    JobEvent,
    Model,
    Teacher,
    Tenant,
    Worker,
)

Row = TypeVar("Row", Teacher, BaseModelRow, Dataset, Job, Model)

# Our ids are ``prefix_hex``; anything else cannot exist, and must not reach the database as is
# (Postgres refuses NUL characters in text with an error rather than "no rows").
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None

# --- tenants and keys ---------------------------------------------------------------


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(sa.select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), name=name, created_at=utcnow())
        session.add(tenant)
        session.flush()
    return tenant


def add_api_key(session: Session, tenant_id: str, prefix: str, key_hash: str) -> ApiKey:
    key = ApiKey(id=new_id("key"), tenant_id=tenant_id, prefix=prefix, key_hash=key_hash, created_at=utcnow())
    session.add(key)
    session.flush()
    return key


def list_api_keys(session: Session, tenant_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (revoked ones too) with its tenant's name, oldest first."""
    query = sa.select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
    if tenant_name is not None:
        query = query.where(Tenant.name == tenant_name)
    return [(key, name) for key, name in session.execute(query.order_by(ApiKey.created_at, ApiKey.id))]


def revoke_api_key(session: Session, key_id_or_prefix: str) -> ApiKey | None:
    """Mark a key revoked (by its id ``key_...`` or its 12-character prefix); None when no key matches."""
    query = sa.select(ApiKey).where(sa.or_(ApiKey.id == key_id_or_prefix, ApiKey.prefix == key_id_or_prefix))
    keys = list(session.scalars(query))
    if len(keys) != 1:
        return None
    if keys[0].revoked_at is None:
        keys[0].revoked_at = utcnow()
        session.flush()
    return keys[0]


def active_keys_with_prefix(session: Session, prefix: str) -> Sequence[ApiKey]:
    return session.scalars(sa.select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).all()


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Serialise job creation per tenant until the session commits or rolls back.

    Postgres: a row lock on the tenant. SQLite has no row locks, and its Python driver opens
    a transaction only before the first INSERT, so two requests could both count the active
    jobs before either inserted (the per-tenant limit of 4 let 8 through). ``BEGIN IMMEDIATE``
    takes SQLite's one write lock now; the other writers wait for it (``busy_timeout``).
    """
    if session.get_bind().dialect.name == "sqlite":
        driver = session.connection().connection.dbapi_connection
        if driver is not None and not driver.in_transaction:
            session.execute(sa.text("BEGIN IMMEDIATE"))
        else:  # already writing: a no-op write takes the same lock
            session.execute(sa.update(Tenant).where(Tenant.id == tenant_id).values(id=Tenant.id))
        return
    session.execute(sa.select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


# --- generic tenant-scoped access ------------------------------------------------------


def get_owned(session: Session, table: type[Row], tenant_id: str, row_id: str) -> Row | None:
    if not is_valid_id(row_id):
        return None
    return session.scalar(sa.select(table).where(table.id == row_id, table.tenant_id == tenant_id))


def list_owned(
    session: Session,
    table: type[Row],
    tenant_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    status: str | None = None,
) -> list[Row]:
    """Newest first, keyset-paginated on (created_at, id); returns up to ``limit + 1`` rows."""
    query = sa.select(table).where(table.tenant_id == tenant_id)
    if status is not None:
        query = query.where(table.status == status)  # type: ignore[union-attr]
    if after is not None:
        created_at, row_id = after
        query = query.where(
            sa.or_(table.created_at < created_at, sa.and_(table.created_at == created_at, table.id < row_id))
        )
    query = query.order_by(table.created_at.desc(), table.id.desc()).limit(limit + 1)
    return list(session.scalars(query))


def active_jobs_with_student_base(session: Session, tenant_id: str, base_id: str) -> int:
    """Queued or running jobs whose student starts from ``base_id`` (a teacher or a base model)."""
    query = sa.select(Job.student).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_STATUSES))
    return sum(1 for student in session.scalars(query) if (student or {}).get("base") == base_id)


def count_jobs_using(session: Session, *, teacher_id: str | None = None, dataset_id: str | None = None,
                     active_only: bool = True) -> int:
    query = sa.select(sa.func.count()).select_from(Job)
    if teacher_id is not None:
        query = query.where(Job.teacher_id == teacher_id)
    if dataset_id is not None:
        query = query.where(sa.or_(Job.train_dataset_id == dataset_id, Job.eval_dataset_id == dataset_id,
                                   Job.validation_dataset_id == dataset_id))
    if active_only:
        query = query.where(Job.status.in_(ACTIVE_STATUSES))
    return int(session.scalar(query) or 0)


# --- jobs: API side ------------------------------------------------------------------------


def count_active_jobs(session: Session, tenant_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(Job).where(
        Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_STATUSES))
    return int(session.scalar(query) or 0)


def get_job_by_idempotency_key(session: Session, tenant_id: str, key: str) -> Job | None:
    return session.scalar(sa.select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def job_counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status))
    return {status: int(n) for status, n in rows}


def add_event(session: Session, job_id: str, type: str, message: str,  # noqa: A002
              data: dict[str, Any] | None = None) -> JobEvent:
    """Append to a job's log (the state changes in ``app.db.job_states`` write theirs themselves)."""
    event = JobEvent(job_id=job_id, at=utcnow(), type=type, message=message, data=data)
    session.add(event)
    session.flush()
    return event


def list_events(session: Session, job_id: str, *, after: int | None, limit: int) -> list[JobEvent]:
    query = sa.select(JobEvent).where(JobEvent.job_id == job_id)
    if after is not None:
        query = query.where(JobEvent.id > after)
    return list(session.scalars(query.order_by(JobEvent.id).limit(limit + 1)))


# --- jobs: worker side ---------------------------------------------------------------------


def get_job(session: Session, job_id: str) -> Job | None:
    """Unscoped: the worker acts on the id it was given, whatever the tenant."""
    return session.get(Job, job_id, populate_existing=True)


def create_model(
    session: Session,
    *,
    tenant_id: str,
    job_id: str,
    teacher_id: str | None,
    method: str,
    kind: str,
    labels: list[str],
    uri: str,
    metrics: dict[str, Any],
    parameters: int | None = None,
    size_bytes: int | None = None,
    model_id: str | None = None,
    text_pairs: bool | None = None,
) -> Model:
    """Insert the model row of a finished job (``model_id`` lets the worker pick the store path first)."""
    model = Model(
        id=model_id or new_id("mdl"), tenant_id=tenant_id, job_id=job_id, teacher_id=teacher_id, method=method,
        kind=kind, labels=labels, uri=uri, metrics=metrics, parameters=parameters,
        size_bytes=size_bytes, text_pairs=text_pairs, created_at=utcnow(),
    )
    session.add(model)
    session.flush()
    return model


# --- workers -------------------------------------------------------------------------------


def beat_worker(session: Session, hostname: str, queues: list[str], devices: list[str]) -> None:
    """Insert or refresh a worker's row (one per Celery node name)."""
    now = utcnow()
    worker = session.get(Worker, hostname)
    if worker is None:
        session.add(Worker(hostname=hostname, queues=queues, devices=devices, started_at=now, heartbeat_at=now))
    else:
        worker.queues, worker.devices, worker.heartbeat_at = queues, devices, now
    session.flush()


def remove_worker(session: Session, hostname: str) -> None:
    session.execute(sa.delete(Worker).where(Worker.hostname == hostname))


def live_workers(session: Session, since: datetime) -> list[Worker]:
    """Workers that beat at or after ``since``."""
    return list(session.scalars(sa.select(Worker).where(Worker.heartbeat_at >= since).order_by(Worker.hostname)))
