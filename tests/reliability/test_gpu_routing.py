"""Issue 11, done-when: a GPU worker and a CPU worker side by side, ``auto`` jobs routed by the policy.

Real Postgres (the session's throwaway database), a private ``redis-server`` as the broker (no
other test's worker can take these jobs), a real uvicorn API and two real ``celery worker``
processes started by ``worker.cli.worker_command``, as ``lelp worker`` starts them:
- ``gpu-sim``: ``--queues gpu``, with ``LELP_TEST_NVIDIA_PROC_DIR`` pointing at a directory
  that lists one GPU, so the registry records ``cuda:0`` (the job itself runs on the CPU:
  torch sees no CUDA device);
- ``cpu``: ``--queues cpu``.
Which worker ran a job is read from that worker's own log (the task logs ``job <id> -> status``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.worker_helpers import PrivateRedis, Stack, wait_for
from tests.service_fixtures import ServiceProcess, _child_env
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.slow]

HYPERPARAMETERS = {"epochs": 1, "batch_size": 16, "seed": 0, "max_length": 16, "augment": 0}  # routing, not data


def start_worker(stack: Stack, name: str, queues: str, **env: str) -> ServiceProcess:
    from worker.cli import worker_command

    command = worker_command(queues=queues, hostname=f"{name}-{uuid.uuid4().hex[:6]}@%h")
    worker = ServiceProcess(name, command, _child_env({**stack.env, **env}), stack.log_dir).start()
    stack.processes.append(worker)
    worker.wait_for_log(" ready.")
    return worker


def live_workers(database_url: str) -> dict[str, tuple[list[str], list[str]]]:
    from datetime import timedelta

    from app.db import repositories as repo
    from app.db.base import utcnow
    from app.db.session import session_scope

    with session_scope(database_url) as session:
        return {w.hostname: (w.queues, w.devices) for w in repo.live_workers(session, utcnow() - timedelta(seconds=60))}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pg_url, tiny_teacher_dir) -> Iterator[dict[str, Any]]:
    from app.client.http import LelpClient
    from app.db.session import session_scope
    from app.security import create_api_key

    root = tmp_path_factory.mktemp("gpu-routing")
    broker = PrivateRedis(root).start()
    stack = Stack.create(root, database_url=pg_url, broker_url=broker.url)
    fake_driver = root / "nvidia-gpus"
    (fake_driver / "0000:00:04.0").mkdir(parents=True)
    try:
        api = stack.start_api()
        gpu = start_worker(stack, "gpu-sim", "gpu", LELP_TEST_NVIDIA_PROC_DIR=str(fake_driver))
        cpu = start_worker(stack, "cpu", "cpu")
        with session_scope(pg_url) as session:
            key = create_api_key(session, "gpu-routing")
        with LelpClient(api.url, key, timeout=60) as client:
            teacher = client.upload_teacher(tiny_teacher_dir)
            train = client.upload_dataset(write_csv(root / "train.csv", make_text_rows(200, seed=5)))
            yield {"stack": stack, "client": client, "teacher": teacher["id"], "train": train["id"], "db": pg_url,
                   "gpu": gpu, "cpu": cpu}
    finally:
        stack.stop()
        broker.kill()


def run(deployment: dict[str, Any], student: str, device: str = "auto") -> str:
    client = deployment["client"]
    job = client.create_job(deployment["teacher"], deployment["train"], method="kd", student=student, device=device,
                            hyperparameters=HYPERPARAMETERS)
    done = client.wait_job(job["id"], poll=0.5, timeout=240)
    assert done["status"] == "succeeded", f"{done.get('error')}\n{deployment['stack'].logs()}"
    return job["id"]


def ran_on(deployment: dict[str, Any], job_id: str) -> list[str]:
    needle = f"job {job_id} -> succeeded"

    def found() -> list[str]:
        return [name for name in ("gpu", "cpu") if needle in deployment[name].log_tail(10_000_000)]

    return wait_for(found, 10, lambda: f"{needle!r} in a worker log\n{deployment['stack'].logs()}")


def test_auto_jobs_route_by_the_policy(deployment) -> None:  # noqa: ANN001
    registered = live_workers(deployment["db"])
    gpu_rows = [(q, d) for name, (q, d) in registered.items() if name.startswith("gpu-sim-")]
    assert gpu_rows == [(["gpu"], ["cpu", "cuda:0"])], registered  # the simulated GPU worker counts as one

    assert ran_on(deployment, run(deployment, "transformer")) == ["gpu"], "auto + a kind a GPU speeds up"
    assert ran_on(deployment, run(deployment, "ngram")) == ["cpu"], "auto + a kind a GPU would not speed up"
    assert ran_on(deployment, run(deployment, "transformer", device="cpu")) == ["cpu"], "device cpu is kept"

    deployment["gpu"].stop(grace_s=20)  # a warm shutdown removes its row from the registry
    wait_for(lambda: not any(n.startswith("gpu-sim-") for n in live_workers(deployment["db"])), 30,
             "the GPU worker to leave the registry")
    started = time.monotonic()
    assert ran_on(deployment, run(deployment, "transformer")) == ["cpu"], "no GPU worker alive: auto goes to cpu"
    assert time.monotonic() - started < 240
    from app.client.http import ApiError

    with pytest.raises(ApiError) as error:  # device gpu with no GPU worker alive: refused at submit
        deployment["client"].create_job(deployment["teacher"], deployment["train"], method="kd", student="ngram",
                                        device="gpu", hyperparameters=HYPERPARAMETERS)
    assert error.value.status == 422 and error.value.code == "no_gpu_worker"
