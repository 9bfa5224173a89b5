"""One name for the student kind: ``kind`` (``architecture`` stays the teacher's Hugging Face class).

``models.architecture`` (the student kind of a model) becomes ``models.kind``, and every stored
job's ``student`` JSON says ``kind`` instead of ``architecture``. Teachers and base models keep
``architecture``: there it is the Hugging Face class from config.json.

Revision ID: 0003_student_kind
Revises: 0002_base_models_workers
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_student_kind"
down_revision = "0002_base_models_workers"
branch_labels = None
depends_on = None

_jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("student", sa.JSON))


def _rename_student_key(old: str, new: str) -> None:
    bind = op.get_bind()
    for job_id, student in bind.execute(sa.select(_jobs.c.id, _jobs.c.student)).all():
        if isinstance(student, dict) and old in student:
            renamed = {(new if key == old else key): value for key, value in student.items()}
            bind.execute(sa.update(_jobs).where(_jobs.c.id == job_id).values(student=renamed))


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.alter_column("architecture", new_column_name="kind", existing_type=sa.String(length=40),
                           existing_nullable=False)
    _rename_student_key("architecture", "kind")


def downgrade() -> None:
    _rename_student_key("kind", "architecture")
    with op.batch_alter_table("models") as batch:
        batch.alter_column("kind", new_column_name="architecture", existing_type=sa.String(length=40),
                           existing_nullable=False)
