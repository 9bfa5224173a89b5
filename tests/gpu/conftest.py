"""Tests that need a CUDA device (marked ``gpu``; skipped without one).

``scripts/gpu_check.sh`` runs them on a lent GPU machine. The job test runs the real service
processes on SQLite and the SQLite broker (what ``lelp serve`` uses), so that the GPU machine needs
no Postgres or Redis: the GPU path under test is the worker's, not the database's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.service_fixtures import ServiceProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001
    """Every test under tests/gpu is marked ``gpu`` and skipped where CUDA is absent."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
            item.add_marker(needs_cuda)


@pytest.fixture(scope="session")
def sqlite_service(tmp_path_factory) -> Iterator[dict]:
    """A migrated SQLite database, the SQLite broker, a GPU worker (``lelp worker --queues gpu
    --gpus 0``: pinned, one process) and the API, as real processes; yields the client settings."""
    pytest.importorskip("celery")
    from app.db.migrate import upgrade
    from app.db.session import session_scope
    from app.security import create_api_key

    data = tmp_path_factory.mktemp("gpu-service")
    env = dict(os.environ, LELP_DATA_DIR=str(data), LELP_DATABASE_URL=f"sqlite:///{data}/lelp.db",
               LELP_BROKER_URL=f"sqla+sqlite:///{data}/broker.sqlite", LELP_ARTIFACT_URL=str(data / "artifacts"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p))
    upgrade(env["LELP_DATABASE_URL"])
    with session_scope(env["LELP_DATABASE_URL"]) as session:
        key = create_api_key(session, "gpu")
    logs = tmp_path_factory.mktemp("gpu-logs")
    worker = ServiceProcess("worker-gpu", [sys.executable, "-m", "worker.cli", "worker", "--queues", "gpu",
                                           "--gpus", "0"], env, logs).start()
    port = free_port()
    api = ServiceProcess("api", [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port)], env, logs).start()
    try:
        worker.wait_for_log(" ready.", timeout_s=120)
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{api.log_tail()}")
            time.sleep(0.5)
        yield {"url": f"http://127.0.0.1:{port}", "key": key, "worker": worker, "env": env}
    finally:
        for process in (api, worker):
            process.stop(grace_s=30)
        subprocess.run(["sync"], check=False)
