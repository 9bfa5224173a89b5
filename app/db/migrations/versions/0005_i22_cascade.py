"""Cascade serving and the traffic a cascade keeps (issue 22).

- ``models.cascade``: JSON, NULL unless the model is served as a cascade: the threshold chosen on
  the job's validation rows, the target it was chosen for, and whether deferred rows are kept.
- ``traffic_rows``: inputs a cascade sent to the teacher with the teacher's answer, kept only for
  models that opted in, bounded per model; ``POST /v1/models/{id}/redistil`` adds them to the
  transfer set of a new job.

Revision ID: 0005_i22_cascade
Revises: 0005_i19b_webhooks
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i22_cascade"
down_revision = "0005_i19b_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("cascade", sa.JSON(), nullable=True))
    op.create_table(
        "traffic_rows",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(length=40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.String(length=40), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_pair", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_traffic_rows_model_id", "traffic_rows", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_traffic_rows_model_id", table_name="traffic_rows")
    op.drop_table("traffic_rows")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("cascade")
