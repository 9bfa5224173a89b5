"""Helpers for the killed-worker and restart tests: a private Redis, the API and workers as processes.

The tests kill processes with SIGKILL, so nothing here is shared with other test files:
- ``PrivateRedis`` runs its own ``redis-server`` on a free port with no persistence
  (``--save "" --appendonly no``): restarting it loses every message it held, as a broker
  crash without a disk would; the system Redis is never touched.
- ``Stack`` holds one ``LELP_*`` environment (the session's Postgres, that Redis, an
  artifact store of its own) and starts real ``celery worker`` and uvicorn processes with
  it, through ``tests.service_fixtures`` (the production code path, not the embedded one).
- ``job_row`` / ``job_events`` read the database directly: they work while the API is down.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.service_fixtures import REPO_ROOT, ServiceProcess, _child_env, free_port, start_worker

# A killed worker's job is found by the sweep of the next worker: within heartbeat_stale_s +
# sweep_interval_s. Short values keep each kill to seconds; the heartbeat beats every
# max(1, stale/4) s, so 8 s leaves room for a busy machine.
HEARTBEAT_STALE_S = 8
SWEEP_INTERVAL_S = 1


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str | Callable[[], str],
             poll_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout_s``.

    ``what`` may be a callable, so that process logs are read only when the wait fails.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(poll_s)


class PrivateRedis:
    """A throwaway ``redis-server`` that a test may kill and restart on the same port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> PrivateRedis:
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--protected-mode", "no"]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        try:
            wait_for(answers, 20, f"redis-server on port {self.port}")
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: every queued and unacknowledged message is gone (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def client(self):  # noqa: ANN201 - redis.Redis, imported lazily
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2)


@dataclass
class Stack:
    """One deployment's environment, and the processes started with it (all stopped by ``stop``)."""

    env: dict[str, str]
    log_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)
    workers: list[ServiceProcess] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, *, database_url: str, broker_url: str, **settings: Any) -> Stack:
        """``settings`` are extra ``LELP_*`` values, e.g. ``job_max_attempts=2``."""
        log_dir = root / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "LELP_DATA_DIR": str(root / "data"),
            "LELP_DATABASE_URL": database_url,
            "LELP_BROKER_URL": broker_url,
            "LELP_ARTIFACT_URL": str(root / "artifacts"),
            "LELP_HEARTBEAT_STALE_S": str(HEARTBEAT_STALE_S),
            "LELP_SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S),
            "LELP_MAX_CONCURRENT_JOBS_PER_TENANT": "50",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        }
        env.update({f"LELP_{name.upper()}": str(value) for name, value in settings.items()})
        return cls(env, log_dir)

    @property
    def artifacts(self) -> Path:
        return Path(self.env["LELP_ARTIFACT_URL"])

    def start_worker(self, name: str = "worker", **settings: Any) -> ServiceProcess:
        """A real prefork ``celery worker`` (parent + one child, one process group), ready."""
        env = dict(self.env, **{f"LELP_{k.upper()}": str(v) for k, v in settings.items()})
        worker = start_worker(env, self.log_dir, name=name)
        self.processes.append(worker)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        """Stop (SIGTERM, then SIGKILL) every worker this stack started; the API keeps running."""
        for worker in self.workers:
            worker.stop(grace_s=5)
        self.workers.clear()

    def start_api(self, port: int | None = None) -> ApiProcess:
        api = ApiProcess(self, port or free_port()).start()
        self.processes.append(api.process)
        return api

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(chars)}" for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop(grace_s=5)


class ApiProcess:
    """The API under uvicorn on a fixed port, so a restarted API answers at the same address."""

    def __init__(self, stack: Stack, port: int) -> None:
        self.stack, self.port = stack, port
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
                   "--port", str(port), "--log-level", "warning"]
        self.process = ServiceProcess(f"api-{port}", command, _child_env(stack.env), stack.log_dir)

    def start(self) -> ApiProcess:
        import httpx

        self.process.start()

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                if self.process.process is not None and self.process.process.poll() is not None:
                    raise AssertionError(f"the API exited:\n{self.process.log_tail()}") from None
                return False

        wait_for(ready, 60, f"the API on port {self.port}", poll_s=0.25)
        return self

    def restart(self) -> None:
        """SIGKILL the API and start a new one on the same port."""
        self.process.kill()
        self.process = ServiceProcess(self.process.name, self.process.command, self.process.env,
                                      self.stack.log_dir)
        self.stack.processes.append(self.process)
        self.start()


# --- reading the database directly ----------------------------------------------------------------


def job_row(database_url: str, job_id: str) -> dict[str, Any]:
    from app.db.models import Job
    from app.db.session import session_scope

    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None, job_id
        return {"status": job.status, "attempts": job.attempts, "progress": dict(job.progress or {}),
                "error": job.error, "model_id": job.model_id}


def job_events(database_url: str, job_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from app.db.models import JobEvent
    from app.db.session import session_scope

    with session_scope(database_url) as session:
        rows = session.scalars(sa.select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [{"type": e.type, "message": e.message, "data": dict(e.data or {})} for e in rows]


def models_of(database_url: str, job_ids: list[str]) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from app.db.models import Model
    from app.db.session import session_scope

    with session_scope(database_url) as session:
        rows = session.scalars(sa.select(Model).where(Model.job_id.in_(job_ids)))
        return [{"id": m.id, "job_id": m.job_id, "uri": m.uri} for m in rows]


def in_stage(database_url: str, job_id: str, stage: str, min_epoch: int = 0,
             after_attempt: int = 0) -> Callable[[], bool]:
    """A predicate: a delivery later than ``after_attempt`` is running ``stage`` (epoch >= ``min_epoch``).

    A redelivered job keeps its last progress until the new delivery writes its own, so the
    stage must also have been logged (a ``stage`` event) since the delivery's ``started`` event.
    """

    def check() -> bool:
        row = job_row(database_url, job_id)
        assert row["status"] in ("queued", "running"), f"job {job_id} ended early: {row}"
        if row["status"] != "running" or row["attempts"] <= after_attempt:
            return False
        events = job_events(database_url, job_id)
        starts = [i for i, e in enumerate(events) if e["type"] == "started"]
        if not starts or events[starts[-1]]["data"].get("attempt") != row["attempts"]:
            return False
        if not any(e["type"] == "stage" and e["data"].get("stage") == stage for e in events[starts[-1]:]):
            return False
        progress = row["progress"]
        return progress.get("stage") == stage and (progress.get("epoch") or 0) >= min_epoch

    return check


__all__ = ["REPO_ROOT", "ApiProcess", "PrivateRedis", "Stack", "in_stage", "job_events", "job_row", "models_of",
           "wait_for"]
