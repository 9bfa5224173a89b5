"""Jobs carry their claim and their outbox mark: ``claim_token``, ``checkpoint_uri``, ``enqueued_at``.

- ``claim_token``: a fresh random token per delivery that claimed the job (NULL while queued).
  Every write a worker makes for a job (progress, heartbeat, checkpoint promotion, the final
  state with its model row) is conditional on it, so a worker that lost its claim (cut off
  past the heartbeat timeout, then back) writes nothing.
- ``checkpoint_uri``: the store folder holding the job's promoted checkpoints
  (``checkpoints/{job_id}/{claim_token}``); a resumed delivery reads only this one.
- ``enqueued_at``: when the job's message was last handed to the broker; NULL while a send
  is owed (the transactional-outbox mark the recovery sweep re-sends from). Rows that exist
  at the upgrade count as sent when they were created.

Revision ID: 0004_i20_claims
Revises: 0003_student_kind
Create Date: 2026-12-03 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i20_claims"
down_revision = "0003_student_kind"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("checkpoint_uri", sa.Text(), nullable=True))
        batch.add_column(sa.Column("enqueued_at", TZ, nullable=True))
    jobs = sa.table("jobs", sa.column("enqueued_at", TZ), sa.column("created_at", TZ))
    op.execute(sa.update(jobs).values(enqueued_at=jobs.c.created_at))
    op.create_index("ix_jobs_status_enqueued_at", "jobs", ["status", "enqueued_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_enqueued_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("enqueued_at")
        batch.drop_column("checkpoint_uri")
        batch.drop_column("claim_token")
