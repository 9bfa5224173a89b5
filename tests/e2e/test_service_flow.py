"""From ``POST /v1/jobs`` to ``predict`` through real processes: a tiny but real distillation.

1. Production path: API (uvicorn) + Celery worker process, Postgres + Redis.
2. Embedded path: ``lelp serve`` as a subprocess on SQLite with its local broker.
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest

from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.timeout(300), pytest.mark.slow]
HYPER = {"subclasses": 2, "epochs": 2, "seed": 0}


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-data")
    return (write_csv(root / "train.csv", make_text_rows(160, seed=1)),
            write_csv(root / "eval.csv", make_text_rows(40, seed=2)),
            write_csv(root / "validation.csv", make_text_rows(30, seed=3)))


def test_job_to_predict_on_postgres_and_redis(service_client, celery_worker_process, tiny_teacher_dir, csvs,
                                              tmp_path, service_env):
    client = service_client
    teacher = client.upload_teacher(tiny_teacher_dir, name="tiny")  # the directory goes up as a tar.gz
    assert teacher["labels"] == ["negative", "positive"] and teacher["num_labels"] == 2
    train, evald, validation = (client.upload_dataset(path) for path in csvs)
    assert train["rows"] == 160 and train["label_counts"] == {"negative": 80, "positive": 80}

    job = client.create_job(teacher["id"], train["id"], eval_dataset_id=evald["id"], method="lelp",
                            validation_dataset_id=validation["id"], student="ngram", device="cpu",
                            hyperparameters=HYPER)
    assert job["status"] == "queued" and job["validation_dataset_id"] == validation["id"]
    seen: set[str] = set()
    job = client.wait_job(job["id"], on_progress=lambda j: seen.add(j["status"]), poll=0.5, timeout=180)
    assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
    assert job["attempts"] == 1 and job["error"] is None and job["model_id"]
    assert job["started_at"] and job["finished_at"] >= job["started_at"]
    assert "running" in seen or "queued" in seen

    events = [e["type"] for e in client.job_events(job["id"])["data"]]
    assert "started" in events and events[-1] == "succeeded"

    model = client.get_model(job["model_id"])
    assert model["job_id"] == job["id"] and model["method"] == "lelp" and model["kind"] == "ngram"
    assert set(model["metrics"]) >= {"student", "teacher", "agreement"}
    # the validation dataset's rows, not 10% of the train rows, chose the epoch and the cascade's thresholds
    assert model["metrics"]["validation_source"] == "file"
    assert model["metrics"]["validation_rows"] == 30 == model["metrics"]["cascade"]["validation"]["rows"]
    assert model["metrics"]["train_rows"] == 160

    # Issue 19: the first predict took 7-11 s because the API process built the ONNX export then. The
    # worker builds the packages before the job succeeds (its events say so, before "succeeded"), and
    # the first predict only loads one.
    export_events = [e for e in client.job_events(job["id"])["data"] if e["type"].startswith("export")]
    assert [(e["type"], e["data"]["variant"]) for e in export_events] == [("export_built", "onnx-fp32"),
                                                                          ("export_built", "onnx-int8")]
    assert model["metrics"]["export"]["onnx-fp32"]["passed"] is True
    package = Path(service_env["LELP_ARTIFACT_URL"]) / "exports" / model["id"] / "onnx-fp32.zip"
    built_at = package.stat().st_mtime_ns
    start = time.perf_counter()
    answer = client.predict(model["id"], ["a lovely great film", "awful sad plot"])
    first_predict_s = time.perf_counter() - start
    print(f"first predict after the job: {first_predict_s:.3f} s")
    assert first_predict_s < 1.0, f"the first predict took {first_predict_s:.2f} s"
    assert client.get_model(model["id"])["runtime"] == "onnxruntime"
    assert package.stat().st_mtime_ns == built_at  # the API loaded the worker's package, built none
    assert len(answer["predictions"]) == 2
    for prediction in answer["predictions"]:
        assert prediction["label"] in ("negative", "positive")
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
        assert prediction["score"] == max(prediction["probabilities"].values())

    archive = client.download_artifact(model["id"], tmp_path)
    with tarfile.open(archive) as tar:
        assert any(name.endswith("metrics.json") for name in tar.getnames())


def test_cancel_a_running_job(service_client, celery_worker_process, tiny_teacher_dir, csvs):
    client = service_client
    teacher = client.upload_teacher(tiny_teacher_dir)
    train = client.upload_dataset(csvs[0])
    job = client.create_job(teacher["id"], train["id"], method="kd", student="ngram", device="cpu",
                            hyperparameters={"epochs": 200, "batch_size": 4, "seed": 0})
    running = _wait_for_status(client, job["id"], "running")
    assert running["status"] == "running"
    client.cancel_job(job["id"])
    job = client.wait_job(job["id"], poll=0.5, timeout=120)
    assert job["status"] == "cancelled", celery_worker_process.log_tail()
    assert job["error"]["code"] == "cancelled" and job["model_id"] is None


def _wait_for_status(client, job_id: str, status: str, timeout_s: float = 120) -> dict:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job["status"] == status or job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {status}")


def test_embedded_serve_runs_a_job(tmp_path, tiny_teacher_dir, csvs, capsys):
    """``lelp serve`` with only LELP_DATA_DIR: migrations, key file, worker, job, predict, clean stop."""
    from demo.run import run_demo

    data_dir = tmp_path / "lelp-data"
    result = run_demo(data_dir, tiny_teacher_dir, *csvs[:2], subclasses=2, epochs=1)
    assert result["job"]["status"] == "succeeded"
    assert len(result["predictions"]) == 2
    key_file = data_dir / "api_key"
    assert key_file.read_text().startswith("lelp_") and (key_file.stat().st_mode & 0o777) == 0o600
    assert (data_dir / "lelp.db").exists() and (data_dir / "broker.sqlite").exists()
    assert "ready" in (data_dir / "logs" / "worker.log").read_text()
