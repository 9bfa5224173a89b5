"""Fixtures for the API tests: a fresh Postgres database built by Alembic, clients, keys.

Each test session creates its own database ``lelp_test_<random>`` on the local server
(trust auth), runs ``alembic upgrade head`` on it and drops it at the end; every test
starts from empty tables. Jobs are sent to a recording enqueuer unless a test asks for
the real broker (Redis db 15, no worker).
"""

from __future__ import annotations

import io
import os
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("LELP_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
TEST_BROKER_URL = os.environ.get("LELP_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
TABLES = ("job_events", "traffic_rows",
          "models", "jobs", "datasets", "teachers", "base_models", "workers", "api_keys", "tenants")


def _admin_connect():  # noqa: ANN202
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_database_factory() -> Iterator[Callable[[], str]]:
    """Creates throwaway Postgres databases (dropped at the end of the session); returns URLs."""
    try:
        _admin_connect().close()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Postgres is not reachable at {PG_ADMIN_URL}: {exc}")
    created: list[str] = []
    base = PG_ADMIN_URL.rsplit("/", 1)[0]

    def make() -> str:
        name = f"lelp_test_{uuid.uuid4().hex[:12]}"
        with _admin_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"

    yield make
    for name in created:
        with _admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(pg_database_factory) -> str:
    """A Postgres database at the migrations' head, shared by the session's tests."""
    from app.db.migrate import upgrade

    url = pg_database_factory()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(pg_url):  # noqa: ANN001, ANN201
    from app.db.session import make_engine

    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _clean_tables(request) -> Iterator[None]:  # noqa: ANN001
    """Empty every table after each test that touched the database."""
    yield
    if "engine" in request.fixturenames:
        import sqlalchemy as sa

        eng = request.getfixturevalue("engine")
        with eng.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(engine) -> Iterator:  # noqa: ANN001
    """A plain session on the test database, for arranging and checking rows."""
    from app.db.session import make_sessionmaker

    session = make_sessionmaker(engine)()
    yield session
    session.close()


class Enqueued(list):
    """The recording enqueuer: remembers (job id, device) instead of talking to a broker."""

    def __call__(self, job) -> None:  # noqa: ANN001
        self.append((job.id, job.device))


@pytest.fixture
def enqueued() -> Enqueued:
    return Enqueued()


@pytest.fixture
def make_settings(tmp_path, pg_url) -> Callable:
    from app.settings import Settings

    def make(**overrides):  # noqa: ANN202
        # sweep_in_api off: these tests set job rows by hand and read them back; a sweeper thread
        # in a live server's lifespan would requeue and re-send them behind the test's back.
        values = dict(data_dir=tmp_path / "data", database_url=pg_url, broker_url=TEST_BROKER_URL,
                      artifact_url=str(tmp_path / "artifacts"), max_concurrent_jobs_per_tenant=100,
                      sweep_in_api=False)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(make_settings, engine, enqueued) -> Iterator[Callable]:  # noqa: ANN001
    """Builds a TestClient for settings overrides; jobs go to ``enqueued`` unless ``real_broker=True``."""
    from fastapi.testclient import TestClient

    from app.deps import get_enqueuer
    from app.main import create_app

    clients = []

    def make(real_broker: bool = False, **overrides):  # noqa: ANN202
        app = create_app(make_settings(**overrides))
        if not real_broker:
            app.dependency_overrides[get_enqueuer] = lambda: enqueued
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):  # noqa: ANN001, ANN201
    return make_client()


def _key(db, tenant: str) -> str:  # noqa: ANN001
    from app.security import create_api_key

    return create_api_key(db, tenant)


@pytest.fixture
def key_a(db) -> str:  # noqa: ANN001
    return _key(db, "tenant-a")


@pytest.fixture
def key_b(db) -> str:  # noqa: ANN001
    return _key(db, "tenant-b")


@pytest.fixture
def auth_a(key_a) -> dict[str, str]:  # noqa: ANN001
    return {"Authorization": f"Bearer {key_a}"}


@pytest.fixture
def auth_b(key_b) -> dict[str, str]:  # noqa: ANN001
    return {"Authorization": f"Bearer {key_b}"}


# --- archives of the tiny teacher ---------------------------------------------------------


def tar_gz_of(directory: Path, root: str = "tiny-bert") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname=root)
    return buf.getvalue()


def zip_of(directory: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(directory.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(directory).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="session")
def teacher_tar_gz(tiny_teacher_dir) -> bytes:  # noqa: ANN001
    return tar_gz_of(tiny_teacher_dir)


@pytest.fixture(scope="session")
def teacher_zip(tiny_teacher_dir) -> bytes:  # noqa: ANN001
    return zip_of(tiny_teacher_dir)


@pytest.fixture(scope="session")
def train_csv_bytes(tiny_train_csv) -> bytes:  # noqa: ANN001
    return Path(tiny_train_csv).read_bytes()


# --- arranging resources through the API ----------------------------------------------------


@pytest.fixture
def upload_teacher(client, teacher_tar_gz) -> Callable[[dict], dict]:  # noqa: ANN001
    def upload(headers: dict) -> dict:
        r = client.post("/v1/teachers", headers=headers, files={"file": ("tiny.tar.gz", teacher_tar_gz)})
        assert r.status_code == 201, r.text
        return r.json()

    return upload


@pytest.fixture
def upload_dataset(client, train_csv_bytes) -> Callable[..., dict]:  # noqa: ANN001
    def upload(headers: dict, content: bytes | None = None, filename: str = "train.csv", **fields) -> dict:
        r = client.post("/v1/datasets", headers=headers, files={"file": (filename, content or train_csv_bytes)},
                        data=fields)
        assert r.status_code == 201, r.text
        return r.json()

    return upload


@pytest.fixture
def job_body(upload_teacher, upload_dataset, auth_a) -> dict:  # noqa: ANN001
    """A valid job request for tenant A (teacher and dataset uploaded)."""
    teacher = upload_teacher(auth_a)
    dataset = upload_dataset(auth_a)
    return {"teacher_id": teacher["id"], "train_dataset_id": dataset["id"], "method": "lelp",
            "student": {"kind": "ngram"}, "hyperparameters": {"epochs": 1, "subclasses": 2}}


@pytest.fixture
def make_model(client, db, tiny_teacher_dir):  # noqa: ANN001, ANN201
    """A finished job and its model row whose files are the tiny teacher (a valid predictor directory)."""

    def make(headers: dict, body: dict) -> dict:
        from app.db import job_states
        from app.db import repositories as repo
        from app.db.base import utcnow
        from app.db.models import Job

        job = client.post("/v1/jobs", headers=headers, json=body).json()
        assert job_states.claim(db, job["id"], utcnow())
        model_id = f"mdl_{job['id'][4:]}"
        uri = f"models/{model_id}"
        client.app.state.store.put_dir(tiny_teacher_dir, uri)
        metrics = {"student": {"accuracy": 0.9, "macro_f1": 0.88}, "teacher": {"accuracy": 0.95}, "agreement": 0.9}
        assert job_states.finish(db, job["id"], "succeeded", metrics=metrics, model_id=model_id)
        repo.create_model(db, tenant_id=db.get(Job, job["id"]).tenant_id, job_id=job["id"],
                          teacher_id=job["teacher_id"], method="lelp", kind="ngram",
                          labels=["negative", "positive"], uri=uri, metrics=metrics, parameters=1234,
                          size_bytes=5678, model_id=model_id)
        db.commit()
        return client.get(f"/v1/models/{model_id}", headers=headers).json()

    return make
