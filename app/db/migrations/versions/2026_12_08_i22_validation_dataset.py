"""Jobs may name a validation dataset: rows like the traffic that replace the validation split (issue 22).

Revision ID: 0006_i22_validation_dataset
Revises: 0005_i22_cascade
Create Date: 2026-12-08 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_i22_validation_dataset"
down_revision = "0005_i22_cascade"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("validation_dataset_id", sa.String(length=40), nullable=True))
        batch.create_foreign_key(op.f("fk_jobs_validation_dataset_id_datasets"), "datasets",
                                 ["validation_dataset_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("fk_jobs_validation_dataset_id_datasets"), type_="foreignkey")
        batch.drop_column("validation_dataset_id")
