# ruff: noqa: F811 - fixtures re-exported from tests/app/conftest.py are taken as parameters
"""Fixtures for the reliability tests: the API test fixtures, a real uvicorn server, real models.

The database fixtures (a throwaway Postgres database built by Alembic, emptied after each
test), the recording enqueuer and the key fixtures are those of ``tests/app/conftest.py``;
this file adds what the hostile-input, concurrency and isolation tests need on top: a
uvicorn server on a free port (real HTTP, real connection handling), a real distilled
student artifact, and a ``figures`` record whose lines end up in ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.app.conftest import (  # noqa: F401 - fixtures, re-exported for this directory
    _clean_tables,
    auth_a,
    auth_b,
    client,
    db,
    engine,
    enqueued,
    key_a,
    key_b,
    make_client,
    make_settings,
    pg_database_factory,
    pg_url,
    tar_gz_of,
    teacher_tar_gz,
    train_csv_bytes,
)

FIGURES: dict[str, str] = {}


@pytest.fixture
def figures(request) -> Callable[[str], None]:
    """``figures("inputs tried 41 / 5xx seen 0 / files lost 0")``: printed at the end of the run."""

    def record(text: str) -> None:
        FIGURES[request.node.name] = text

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, text in FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")


class CountingEnqueuer:
    """Thread-safe recording enqueuer: how many times each job id was handed to the broker."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, job) -> None:
        with self._lock:
            self.calls[job.id] += 1


class LiveServer:
    """A uvicorn server in a thread, bound to a free port, serving one app."""

    def __init__(self, app, log_level: str = "info") -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level=log_level, access_log=True, lifespan="on", backlog=1024,
                                timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def live_server(make_settings, engine) -> Iterator[Callable[..., tuple[LiveServer, CountingEnqueuer]]]:
    """``live_server(**settings_overrides)`` -> (server, enqueuer): the real app over real HTTP."""
    from app.deps import get_enqueuer
    from app.main import create_app

    servers: list[LiveServer] = []

    def start(log_level: str = "info", **overrides) -> tuple[LiveServer, CountingEnqueuer]:
        app = create_app(make_settings(**overrides))
        enqueuer = CountingEnqueuer()
        app.dependency_overrides[get_enqueuer] = lambda: enqueuer
        server = LiveServer(app, log_level=log_level).start()
        servers.append(server)
        return server, enqueuer

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory, tiny_teacher_dir, tiny_train_csv) -> Path:
    """A real student artifact (tiny n-gram student, 1 epoch, ~2 s): what the worker would store."""
    from lelp.pipeline import DistillConfig, distill

    out = tmp_path_factory.mktemp("student")
    config = DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv), method="kd",
                           student="ngram", epochs=1,
                           student_options={"n_features": 4096, "embedding_dim": 16, "hidden": 32})
    result = distill(config, out / "artifact")
    return Path(result.artifact_dir)


def store_snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file in a local artifact store."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def publish_model(session, store, *, tenant_id: str, job_id: str, teacher_id: str, artifact: Path,
                  labels: list[str]) -> str | None:
    """Finish ``job_id`` with a model the way the worker does: files first, then one transaction.

    Returns the model id, or None when the job had already finished (a cancel won): then
    nothing is kept, files included.
    """
    from app.db import job_states
    from app.db import repositories as repo
    from app.db.base import new_id

    model_id = new_id("mdl")
    uri = f"models/{model_id}"
    store.put_dir(artifact, uri)
    if not job_states.finish(session, job_id, "succeeded", metrics={"agreement": 1.0}, model_id=model_id):
        session.rollback()
        store.delete(uri)
        return None
    repo.create_model(session, tenant_id=tenant_id, job_id=job_id, teacher_id=teacher_id, method="kd",
                      kind="ngram", labels=labels, uri=uri, metrics={"agreement": 1.0},
                      parameters=1, size_bytes=1, model_id=model_id)
    session.commit()
    return model_id


@pytest.fixture
def make_resources(db, student_dir, teacher_tar_gz, train_csv_bytes):
    """``make_resources(api, headers)``: a teacher, a dataset, a queued job and a finished job's model."""
    from app.db.models import Job

    def make(api, headers: dict) -> dict[str, str]:
        teacher = api.post("/v1/teachers", headers=headers, files={"file": ("tiny.tar.gz", teacher_tar_gz)})
        assert teacher.status_code == 201, teacher.text
        dataset = api.post("/v1/datasets", headers=headers, files={"file": ("train.csv", train_csv_bytes)})
        assert dataset.status_code == 201, dataset.text
        body = {"teacher_id": teacher.json()["id"], "train_dataset_id": dataset.json()["id"], "method": "kd",
                "hyperparameters": {"epochs": 1}}
        done = api.post("/v1/jobs", headers=headers, json=body)
        queued = api.post("/v1/jobs", headers=headers, json=body)
        assert done.status_code == queued.status_code == 202, done.text
        tenant_id = db.get(Job, done.json()["id"]).tenant_id
        model_id = publish_model(db, api.app.state.store, tenant_id=tenant_id, job_id=done.json()["id"],
                                 teacher_id=teacher.json()["id"], artifact=student_dir,
                                 labels=["negative", "positive"])
        assert model_id is not None
        return {"teacher": teacher.json()["id"], "dataset": dataset.json()["id"], "job": queued.json()["id"],
                "done_job": done.json()["id"], "model": model_id}

    return make
