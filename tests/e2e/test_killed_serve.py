"""Issue 18: ``kill -9`` of ``lelp serve`` mid-job: its worker dies with it, a restart runs one
worker, and the running job resumes from its checkpoint.

On main the worker processes outlived the killed ``lelp serve``, the restart started a second
worker beside them (two consumers of the embedded broker), and the job failed with
``internal_error`` (FileNotFoundError) instead of resuming.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from app.client.http import LelpClient
from demo.run import free_port, start_server, stop_server, wait_ready
from tests.tiny import make_text_rows, write_csv
from worker.embedded import API_KEY_FILE

pytestmark = [pytest.mark.service, pytest.mark.timeout(400)]


def _processes_of(data_dir: Path) -> list[int]:
    """Live processes (not zombies) whose environment names ``data_dir``: the serve and its worker."""
    marker = f"LELP_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _wait(predicate, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_lelp_serve_takes_its_worker_and_the_job_resumes(tmp_path, tiny_teacher_dir) -> None:  # noqa: ANN001
    data_dir = (tmp_path / "lelp-data").resolve()
    data_dir.mkdir()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(data_dir, port, data_dir / "serve-1.log")
    restarted = None
    try:
        wait_ready(base_url, server)
        key = (data_dir / API_KEY_FILE).read_text().strip()
        with LelpClient(base_url, key, timeout=120) as client:
            teacher = client.upload_teacher(tiny_teacher_dir)
            train = client.upload_dataset(write_csv(tmp_path / "train.csv", make_text_rows(160, seed=3)))
            job = client.create_job(teacher["id"], train["id"], method="kd", student="ngram", device="cpu",
                                    hyperparameters={"epochs": 6, "batch_size": 4, "seed": 0, "augment": 1})

            def at_epoch_2():  # noqa: ANN202
                current = client.get_job(job["id"])
                assert current["status"] in ("queued", "running"), current
                progress = current["progress"] or {}
                return progress.get("stage") == "train" and (progress.get("epoch") or 0) >= 2 and progress

            killed_at = _wait(at_epoch_2, 150, "epoch 2")["epoch"]
        workers = [pid for pid in _processes_of(data_dir) if pid != server.pid]
        assert workers, "no worker process found"
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        _wait(lambda: not _processes_of(data_dir), 15, f"the worker processes {workers} to die with lelp serve")

        restarted = start_server(data_dir, port, data_dir / "serve-2.log")
        wait_ready(base_url, restarted)
        with LelpClient(base_url, key, timeout=120) as client:
            done = _wait(lambda: (j := client.get_job(job["id"]))["status"] not in ("queued", "running") and j,
                         240, "the job to finish")
            assert done["status"] == "succeeded", (done, (data_dir / "logs" / "worker.log").read_text()[-3000:])
            events = client.job_events(job["id"])["data"]
        resumed = next(e["data"]["resumed_from_epoch"] for e in events if e["type"] == "succeeded")
        assert 1 <= resumed <= killed_at, (resumed, killed_at)
        # one worker group: the wrapper, Celery's main process and its one pool child
        groups = {int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[2])
                  for pid in _processes_of(data_dir) if pid != restarted.pid}
        assert len(groups) == 1, groups
    finally:
        for process in (restarted, server):
            if process is not None and process.poll() is None:
                stop_server(process)
