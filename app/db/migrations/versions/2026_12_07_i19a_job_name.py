"""Jobs may carry a ``name`` a person gives them (the console's jobs list shows it); NULL for none.

Revision ID: 0005_i19a_job_name
Revises: 0004_i20_claims
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i19a_job_name"
down_revision = "0004_i20_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("name")
