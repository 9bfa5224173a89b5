"""The schema comes from Alembic: up, down and up again, on SQLite and Postgres."""

from __future__ import annotations

import sqlalchemy as sa

from app.db import migrate
from app.db.session import make_engine

EXPECTED = {"tenants", "api_keys", "teachers", "datasets", "jobs", "job_events", "models", "traffic_rows",
            "base_models", "workers"}


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


def test_student_kind_migration_renames_the_column_and_the_stored_json(tmp_path) -> None:  # noqa: ANN001
    """0003: a model's and a job's student kind, written as ``architecture`` before, read back as ``kind``."""
    import json
    from datetime import UTC, datetime

    url = f"sqlite:///{tmp_path / 'lelp.db'}"
    migrate.upgrade(url, "0002_base_models_workers")
    now = datetime.now(UTC)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_at) VALUES ('tnt_1', 't', :now)"), {"now": now})
        conn.execute(sa.text(
            "INSERT INTO jobs (id, tenant_id, method, student, device, hyperparameters, status, progress, attempts, "
            "cancel_requested, created_at, updated_at) VALUES ('job_1', 'tnt_1', 'kd', :student, 'cpu', '{}', "
            "'succeeded', '{}', 1, 0, :now, :now)"), {"student": json.dumps({"architecture": "ngram", "base": None}),
                                                      "now": now})
        conn.execute(sa.text(
            "INSERT INTO models (id, tenant_id, job_id, method, architecture, labels, metrics, uri, created_at) "
            "VALUES ('mdl_1', 'tnt_1', 'job_1', 'kd', 'ngram', '[]', '{}', 'models/mdl_1', :now)"), {"now": now})
    engine.dispose()
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT kind FROM models")).scalar_one() == "ngram"
        assert json.loads(conn.execute(sa.text("SELECT student FROM jobs")).scalar_one()) == {"kind": "ngram",
                                                                                              "base": None}
    engine.dispose()
    migrate.downgrade(url, "0002_base_models_workers")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT architecture FROM models")).scalar_one() == "ngram"
        assert "architecture" in json.loads(conn.execute(sa.text("SELECT student FROM jobs")).scalar_one())
    engine.dispose()
