"""ORM tables. API schemas live in ``app.schemas``; these are storage only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow
from app.vocabulary import ACTIVE_STATUSES, FINISHED_STATUSES, JobStatus  # noqa: F401 - the ORM's statuses

TZ = UTCDateTime()
JOB_STATUSES = tuple(s.value for s in JobStatus)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(sa.String(16), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)


class Teacher(Base):
    __tablename__ = "teachers"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    uri: Mapped[str] = mapped_column(sa.Text)
    architecture: Mapped[str] = mapped_column(sa.String(200))
    model_type: Mapped[str] = mapped_column(sa.String(100))
    num_labels: Mapped[int] = mapped_column(sa.Integer)
    labels: Mapped[list[str]] = mapped_column(sa.JSON)
    hidden_size: Mapped[int] = mapped_column(sa.Integer)
    parameters: Mapped[int | None] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    # Declared at registration: does the classifier read (text, text_pair) inputs?
    text_pairs: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)


class BaseModelRow(Base):
    """A pretrained model a tenant registered as a student base (an encoder: no head needed)."""

    __tablename__ = "base_models"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    uri: Mapped[str] = mapped_column(sa.Text)
    architecture: Mapped[str] = mapped_column(sa.String(200))
    model_type: Mapped[str] = mapped_column(sa.String(100))
    hidden_size: Mapped[int] = mapped_column(sa.Integer)
    parameters: Mapped[int | None] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    uri: Mapped[str] = mapped_column(sa.Text)
    format: Mapped[str] = mapped_column(sa.String(16))
    text_column: Mapped[str] = mapped_column(sa.String(200))
    text_pair_column: Mapped[str | None] = mapped_column(sa.String(200))
    label_column: Mapped[str | None] = mapped_column(sa.String(200))
    rows: Mapped[int] = mapped_column(sa.Integer)
    labelled_rows: Mapped[int] = mapped_column(sa.Integer)
    label_counts: Mapped[dict[str, int]] = mapped_column(sa.JSON)
    columns: Mapped[list[str]] = mapped_column(sa.JSON)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_id_idempotency_key"),
        sa.Index("ix_jobs_tenant_id_status_created_at", "tenant_id", "status", "created_at"),
        sa.Index("ix_jobs_status_heartbeat_at", "status", "heartbeat_at"),
        sa.Index("ix_jobs_status_enqueued_at", "status", "enqueued_at"),
        sa.Index("ix_jobs_webhook_state_webhook_sent_at", "webhook_state", "webhook_sent_at"),  # the sweep's step 5
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    # what a person called the job (optional; the console's jobs list shows it)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    teacher_id: Mapped[str | None] = mapped_column(sa.ForeignKey("teachers.id", ondelete="SET NULL"))
    train_dataset_id: Mapped[str | None] = mapped_column(sa.ForeignKey("datasets.id", ondelete="SET NULL"))
    eval_dataset_id: Mapped[str | None] = mapped_column(sa.ForeignKey("datasets.id", ondelete="SET NULL"))
    # rows like the traffic the student will serve: they replace the validation split (issue 22)
    validation_dataset_id: Mapped[str | None] = mapped_column(sa.ForeignKey("datasets.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(sa.String(40))
    student: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    device: Mapped[str] = mapped_column(sa.String(8))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.QUEUED.value)
    progress: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    model_id: Mapped[str | None] = mapped_column(sa.String(40))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    request_hash: Mapped[str | None] = mapped_column(sa.String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(TZ)
    # The delivery that holds the job (``app.db.job_states.claim``); every worker write checks it.
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    # The promoted checkpoint folder (``checkpoints/{job_id}/{claim_token}``) a resume reads.
    checkpoint_uri: Mapped[str | None] = mapped_column(sa.Text)
    # When the job's message was last handed to the broker; NULL while a send is owed.
    enqueued_at: Mapped[datetime | None] = mapped_column(TZ)
    # Where the job's final state is POSTed (a host of LELP_WEBHOOK_ALLOWED_HOSTS), and that delivery's
    # state: NULL (none owed), "pending" (set with the final state, in the same UPDATE), "delivered", "failed".
    webhook_url: Mapped[str | None] = mapped_column(sa.Text)
    webhook_state: Mapped[str | None] = mapped_column(sa.String(16))
    # When a pending delivery was handed to the broker; NULL while owed (the recovery sweep sends those).
    webhook_sent_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(TZ)
    finished_at: Mapped[datetime | None] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ, default=utcnow, onupdate=utcnow)


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(TZ, default=utcnow)
    type: Mapped[str] = mapped_column(sa.String(40))
    message: Mapped[str] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    teacher_id: Mapped[str | None] = mapped_column(sa.ForeignKey("teachers.id", ondelete="SET NULL"))
    method: Mapped[str] = mapped_column(sa.String(40))
    kind: Mapped[str] = mapped_column(sa.String(40))  # the student kind
    labels: Mapped[list[str]] = mapped_column(sa.JSON)
    parameters: Mapped[int | None] = mapped_column(sa.BigInteger)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    uri: Mapped[str] = mapped_column(sa.Text)
    # Trained on (text, text_pair) rows; None for models made before this was recorded.
    text_pairs: Mapped[bool | None] = mapped_column(sa.Boolean)
    # Served as a cascade (issue 22): {"threshold", "target", "validation", "keep_traffic", "max_kept_rows"}; NULL: not.
    cascade: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)


class TrafficRow(Base):
    """An input a cascade sent to the teacher, with the teacher's answer (models that opted in only)."""

    __tablename__ = "traffic_rows"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(sa.Text)
    text_pair: Mapped[str | None] = mapped_column(sa.Text)
    label: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)


class Worker(Base):
    """A live Celery worker: what it consumes and what it runs on, beaten every few seconds.

    The API reads it to refuse a job no worker can run (``device: gpu`` with no GPU worker).
    """

    __tablename__ = "workers"

    hostname: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(sa.JSON)
    devices: Mapped[list[str]] = mapped_column(sa.JSON)
    started_at: Mapped[datetime] = mapped_column(TZ, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(TZ, default=utcnow, index=True)
