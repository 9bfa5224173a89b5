"""Fixtures that run the real service: Postgres, Redis, a Celery worker process and the API.

Use them from a ``conftest.py`` with ``from tests.service_fixtures import *``. Everything is
session-scoped (starting a worker costs seconds) and isolated from other runs:
- Postgres at 127.0.0.1:5432 (trust auth): a fresh database ``lelp_test_<random>`` created
  from the ``test`` database, built by the Alembic migrations, dropped afterwards;
- Redis at 127.0.0.1:6379, database 14, flushed before and after;
- a real ``celery worker`` subprocess and a real uvicorn API subprocess on a free port,
  both with the same ``LELP_*`` environment (the production code path, not the embedded one).
When Postgres or Redis does not answer, the tests that need them are skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("LELP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LELP_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
START_TIMEOUT_S = 60.0
WEBHOOK_SECRET = "e2e-webhook-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this test session (SQLAlchemy psycopg URL)."""
    psycopg = pytest.importorskip("psycopg")
    from app.db.migrate import upgrade

    name = f"lelp_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"Postgres is not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(PG_ADMIN_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade(url)
    yield url
    # FORCE closes the connections that pooled engines of this process still hold.
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Redis database 14, emptied before and after the session."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def service_env(tmp_path_factory, pg_url, redis_url) -> dict[str, str]:
    """The ``LELP_*`` environment shared by the worker, the API and in-test database access."""
    data_dir = tmp_path_factory.mktemp("service")
    env = {
        "LELP_DATA_DIR": str(data_dir),
        "LELP_DATABASE_URL": pg_url,
        "LELP_BROKER_URL": redis_url,
        "LELP_ARTIFACT_URL": str(data_dir / "artifacts"),
        "LELP_HEARTBEAT_STALE_S": "20",
        "LELP_SWEEP_INTERVAL_S": "5",
        # webhooks to a receiver the test runs on this machine (tests/e2e/test_webhooks_flow.py)
        "LELP_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "LELP_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LELP_WEBHOOK_BACKOFF_S": "0.5",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    return env


def _child_env(service_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, **service_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class ServiceProcess:
    """A child process with its output in a log file (shown when a test needs it)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.command, self.env = name, command, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=REPO_ROOT, start_new_session=True)
        return self

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log_tail(200_000):
                return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not log {needle!r}:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing gets to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)

    def take_over(self, other: ServiceProcess) -> None:
        """Adopt ``other``'s process (a replacement worker), so this fixture's teardown stops it."""
        self.process, self.log_path = other.process, other.log_path

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()


def start_worker(service_env: dict[str, str], log_dir: Path, name: str = "worker") -> ServiceProcess:
    """A real ``celery worker`` on both queues (prefork, one process), started and ready."""
    command = [sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker", "-Q", "cpu,gpu",
               "-c", "1", "--pool=prefork", "-l", "INFO", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
    worker = ServiceProcess(name, command, _child_env(service_env), log_dir).start()
    worker.wait_for_log(" ready.")
    return worker


@pytest.fixture(scope="session")
def celery_worker_process(service_env, tmp_path_factory) -> Iterator[ServiceProcess]:
    worker = start_worker(service_env, tmp_path_factory.mktemp("logs"))
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def api_server(service_env, tmp_path_factory) -> Iterator[str]:
    """The API under uvicorn in a child process; yields its base URL once ``/readyz`` answers."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    api = ServiceProcess("api", command, _child_env(service_env), tmp_path_factory.mktemp("logs")).start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or api.process.poll() is not None:
            api.stop()
            raise RuntimeError(f"the API did not become ready:\n{api.log_tail()}")
        time.sleep(0.25)
    yield base_url
    api.stop()


@pytest.fixture(scope="session")
def service_api_key(pg_url) -> str:
    """A key of the tenant ``e2e`` (created through the same code as ``lelp admin create-key``)."""
    from app.db.session import session_scope
    from app.security import create_api_key

    with session_scope(pg_url) as session:
        return create_api_key(session, "e2e")


@pytest.fixture
def service_client(api_server, service_api_key):
    from app.client.http import LelpClient

    with LelpClient(api_server, service_api_key, timeout=120) as client:
        yield client


__all__ = [
    "WEBHOOK_SECRET",
    "ServiceProcess",
    "api_server",
    "celery_worker_process",
    "free_port",
    "pg_url",
    "redis_url",
    "service_api_key",
    "service_client",
    "service_env",
    "start_worker",
]
