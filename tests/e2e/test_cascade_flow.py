"""Issue 22's traffic round trip through real processes (API + Celery worker, Postgres + Redis):
serve a cascade, defer, keep, redistil, and a lower share deferred at the same target.

Every split is unlabelled, so the truth is the teacher's answer everywhere (validation and
evaluation): the share deferred at a target measures how often the student disagrees with its
teacher, which is exactly what the kept traffic teaches it.
"""

from __future__ import annotations

import pytest

from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.timeout(420)]
HYPER = {"epochs": 8, "seed": 0}
TARGET = 0.95


def _unlabelled(rows: list[dict]) -> list[dict]:
    return [{"text": r["text"], "label": ""} for r in rows]


def test_serve_defer_keep_redistil(service_client, celery_worker_process, tiny_teacher_dir, tmp_path):
    client = service_client
    teacher = client.upload_teacher(tiny_teacher_dir, name="tiny")
    # no eval set: an eval set must be labelled, so the job holds out its evaluation rows from the
    # unlabelled transfer rows (20 of 120, the least a split takes), where the truth is the teacher's answer
    train = client.upload_dataset(write_csv(tmp_path / "train.csv", _unlabelled(make_text_rows(120, seed=11))),
                                  label_column=None)
    job = client.create_job(teacher["id"], train["id"], method="kd", student="ngram",
                            device="cpu", hyperparameters=HYPER)
    job = client.wait_job(job["id"], poll=0.5, timeout=180)
    assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
    parent = client.get_model(job["model_id"])
    assert parent["metrics"]["calibration"]["temperature"] > 0

    cascade = client.set_cascade(parent["id"], target_accuracy=TARGET, keep_traffic=True, max_kept_rows=2000)
    assert cascade["cascade"]["threshold"] > 0
    traffic = [r["text"] for r in make_text_rows(1200, seed=13)]  # the traffic: like the eval rows, never seen
    served = []
    for i in range(0, len(traffic), 100):
        served += client.predict(parent["id"], traffic[i:i + 100])["predictions"]
    deferred = sum(p["served_by"] == "teacher" for p in served)
    assert 0 < deferred < len(traffic)
    assert client.traffic(parent["id"])["kept_rows"] == deferred

    job2 = client.redistil(parent["id"])
    assert job2["hyperparameters"]["cascade_reference"]["kept_rows"] == deferred
    job2 = client.wait_job(job2["id"], poll=0.5, timeout=240)
    assert job2["status"] == "succeeded", f"{job2['error']}\n{celery_worker_process.log_tail()}"
    child = client.get_model(job2["model_id"])
    redistil = child["metrics"]["cascade"]["redistil"]
    assert redistil["from_model_id"] == parent["id"] and redistil["target"] == TARGET
    before = next(t for t in parent["metrics"]["cascade"]["targets"] if t["target"] == TARGET)["deferred_fraction"]
    assert redistil["deferred_before"] == before
    print("redistil:", redistil)  # the figures for the closing note (pytest -s)
    assert redistil["deferred_after"] < before, redistil
