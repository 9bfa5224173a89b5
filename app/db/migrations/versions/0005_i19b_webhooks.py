"""Jobs may name a webhook: ``webhook_url`` and the state of its delivery, ``webhook_state``.

- ``webhook_url``: where the job's final state is POSTed (signed, HMAC-SHA256), a host the
  operator allowed (``LELP_WEBHOOK_ALLOWED_HOSTS``); NULL for none.
- ``webhook_state``: NULL (nothing owed), ``pending`` (set in the same UPDATE as the final state,
  so a delivery is owed exactly when the job finished), ``delivered`` or ``failed`` (retries spent).
- ``webhook_sent_at``: when the pending delivery was handed to the broker; NULL while that is owed
  (the outbox mark the recovery sweep sends from, as ``enqueued_at`` for jobs).

Revision ID: 0005_i19b_webhooks
Revises: 0005_i19a_job_name
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i19b_webhooks"
down_revision = "0005_i19a_job_name"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("webhook_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("webhook_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_webhook_state_webhook_sent_at", "jobs", ["webhook_state", "webhook_sent_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_webhook_state_webhook_sent_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook_sent_at")
        batch.drop_column("webhook_state")
        batch.drop_column("webhook_url")
