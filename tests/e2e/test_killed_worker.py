"""A worker SIGKILLed mid-training loses nothing: the sweeper requeues the job, a new worker
resumes it from its last epoch checkpoint, and the attempt is counted (issue 5, item 1).

Needs a short heartbeat window: the service fixtures set LELP_HEARTBEAT_STALE_S=20 and
LELP_SWEEP_INTERVAL_S=5, so the orphaned job is found within about 25 seconds.
"""

from __future__ import annotations

import time

import pytest

from tests.service_fixtures import start_worker
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.timeout(300), pytest.mark.slow]


def test_sigkilled_worker_job_resumes_from_checkpoint(service_client, celery_worker_process, service_env,
                                                     tiny_teacher_dir, tmp_path):
    client = service_client
    teacher = client.upload_teacher(tiny_teacher_dir)
    train = client.upload_dataset(write_csv(tmp_path / "train.csv", make_text_rows(160, seed=3)))
    job = client.create_job(teacher["id"], train["id"], method="kd", student="ngram", device="cpu",
                            hyperparameters={"epochs": 6, "batch_size": 4, "seed": 0, "augment": 1})

    deadline = time.monotonic() + 120
    while True:  # kill once the first epoch's checkpoint is written (progress reports epoch 2)
        current = client.get_job(job["id"])
        progress = current["progress"] or {}
        if current["status"] == "running" and progress.get("stage") == "train" and (progress.get("epoch") or 0) >= 2:
            break
        assert current["status"] in ("queued", "running"), current
        assert time.monotonic() < deadline, f"never reached epoch 2: {current}"
        time.sleep(0.1)
    celery_worker_process.kill()
    killed_at_epoch = progress["epoch"]

    replacement = start_worker(service_env, celery_worker_process.log_path.parent, name="worker-2")
    celery_worker_process.take_over(replacement)  # the session fixture stops it at the end
    job = client.wait_job(job["id"], poll=0.5, timeout=200)
    assert job["status"] == "succeeded", f"{job}\n{replacement.log_tail()}"
    assert job["attempts"] == 2

    events = client.job_events(job["id"])["data"]
    kinds = [e["type"] for e in events]
    assert "requeued" in kinds, kinds
    resumed = next(e["data"]["resumed_from_epoch"] for e in events if e["type"] == "succeeded")
    assert 1 <= resumed <= killed_at_epoch, (resumed, killed_at_epoch)
    print(f"killed at epoch {killed_at_epoch}; resumed from epoch {resumed}; attempts {job['attempts']}")
