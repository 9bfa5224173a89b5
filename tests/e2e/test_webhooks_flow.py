"""A job's webhook through the real processes: API + Celery worker, Postgres + Redis, a local receiver.

The receiver refuses the first try (503): the worker's Celery task retries it after the backoff,
the second try is delivered, signed with the operator's secret; each try is a job event.
"""

from __future__ import annotations

import time

import pytest

from app.services.webhooks import verify_signature
from tests.service_fixtures import WEBHOOK_SECRET
from tests.tiny import make_text_rows, write_csv
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]


def test_a_succeeded_job_calls_its_webhook_with_retries(service_client, celery_worker_process, tiny_teacher_dir,
                                                        tmp_path):
    client = service_client
    receiver = Receiver(answers=[503, 200]).start()
    try:
        teacher = client.upload_teacher(tiny_teacher_dir, name="tiny-hooks")
        train = client.upload_dataset(write_csv(tmp_path / "train.csv", make_text_rows(120, seed=5)))
        evald = client.upload_dataset(write_csv(tmp_path / "eval.csv", make_text_rows(40, seed=6)))
        job = client.create_job(teacher["id"], train["id"], eval_dataset_id=evald["id"], method="kd",
                                student="ngram", device="cpu", hyperparameters={"epochs": 1, "seed": 0},
                                webhook_url=receiver.url)
        assert job["webhook_url"] == receiver.url
        job = client.wait_job(job["id"], poll=0.5, timeout=240)
        assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
        requests = receiver.wait_for(2, timeout_s=60)
        assert len(requests) == 2, celery_worker_process.log_tail()
        for n, request in enumerate(requests, start=1):
            assert request.headers["X-Lelp-Attempt"] == str(n) and request.headers["X-Lelp-Event"] == "job.succeeded"
            assert verify_signature(WEBHOOK_SECRET, request.headers["X-Lelp-Signature"], request.body)
        body = requests[-1].json
        assert body["type"] == "job.succeeded" and body["data"]["id"] == job["id"]
        assert body["data"]["model_id"] == job["model_id"] and body["data"]["metrics"]["student"]["accuracy"] >= 0
        deadline = time.monotonic() + 10
        while client.get_job(job["id"])["webhook_state"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get_job(job["id"])["webhook_state"] == "delivered"
        tries = [e for e in client.job_events(job["id"])["data"] if e["type"] == "webhook"]
        assert [(t["data"]["attempt"], t["data"]["status_code"], t["data"]["delivered"]) for t in tries] == [
            (1, 503, False), (2, 200, True)]
        assert tries[0]["data"]["retry_in_s"] == 0.5
        assert len(receiver.requests) == 2  # delivered once: no further call
    finally:
        receiver.stop()
