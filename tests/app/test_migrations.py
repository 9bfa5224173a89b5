"""The schema comes from Alembic: up, down and up again, on SQLite and Postgres."""

from __future__ import annotations

import sqlalchemy as sa

from app.db import migrate
from app.db.session import make_engine

EXPECTED = {"tenants", "api_keys", "teachers", "datasets", "jobs", "job_events", "models", "base_models",
            "workers"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED
    assert migrate.current(url) is not None
    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED


def test_sqlite_upgrade_downgrade(tmp_path) -> None:  # noqa: ANN001
    _roundtrip(f"sqlite:///{tmp_path / 'nested' / 'lelp.db'}")


def test_postgres_upgrade_downgrade(pg_database_factory) -> None:  # noqa: ANN001
    _roundtrip(pg_database_factory())


def test_postgres_schema_has_the_constraints_the_service_relies_on(pg_url) -> None:  # noqa: ANN001
    engine = make_engine(pg_url)
    try:
        inspector = sa.inspect(engine)
        uniques = {c["name"] for c in inspector.get_unique_constraints("jobs")}
        assert "uq_jobs_tenant_id_idempotency_key" in uniques
        indexes = {i["name"] for i in inspector.get_indexes("jobs")}
        assert "ix_jobs_tenant_id_status_created_at" in indexes
        columns = {c["name"]: c for c in inspector.get_columns("jobs")}
        assert isinstance(columns["created_at"]["type"], sa.DateTime) and columns["created_at"]["type"].timezone
    finally:
        engine.dispose()


def test_alembic_ini_at_repo_root_points_at_the_migrations() -> None:
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    ini = Path(__file__).resolve().parents[2] / "alembic.ini"  # the migrations moved into app/db (issue 8)
    script = ScriptDirectory.from_config(Config(str(ini)))
    assert script.get_current_head() == ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()


def test_models_match_the_migrations(pg_url) -> None:  # noqa: ANN001
    """The ORM tables and the migrated schema agree (a model change needs a migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.db.base import Base

    engine = make_engine(pg_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
