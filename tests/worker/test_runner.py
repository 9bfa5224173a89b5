"""The job flow of ``worker.runner.run_job`` on SQLite with a real tiny distillation."""

from __future__ import annotations

import importlib.util
import socket
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.db.base import utcnow
from app.db.models import Dataset, Job, Model, Teacher
from app.db.session import session_scope
from tests.tiny import make_text_rows, write_csv
from tests.worker.conftest import events, load_job
from worker import job_progress, runner
from worker.runner import run_job


def _set(settings, job_id: str, **values) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(sa.update(Job).where(Job.id == job_id).values(**values))


def test_job_runs_to_a_stored_model(worker_settings, make_job, store):
    job_id = make_job()
    assert run_job(job_id, worker_settings) == "succeeded"

    job = load_job(worker_settings, job_id)
    assert job.status == "succeeded" and job.attempts == 1 and job.error is None
    assert job.started_at is not None and job.finished_at is not None and job.finished_at >= job.started_at
    assert job.metrics["student"]["accuracy"] is not None
    assert job.progress["stage"] in {"save", "evaluate"}
    # one bar for the whole job: the last write is near its end, with the candidate it trained
    assert 0.95 <= job.progress["overall_fraction"] < 1
    assert job.progress["candidate"] == job.progress["candidates"] == 1
    assert job.progress["candidate_name"].startswith("lelp-S")
    with session_scope(worker_settings.database_url) as session:
        model = session.get(Model, job.model_id)
        assert model.job_id == job_id and model.labels == ["negative", "positive"]
        # the folder of the claim that published it (worker.runner._publish)
        assert model.uri.startswith(f"models/{job.model_id}/") and model.size_bytes > 0
    assert "metrics.json" in store.list_files(model.uri)
    assert {"report.html", "report_data.json"} <= set(store.list_files(model.uri))
    history = job.progress["history"]  # the live report's curve: one point per (candidate, epoch)
    epochs = job.metrics["chosen"]["epochs"]
    assert [p["epoch"] for p in history][-epochs:] == list(range(1, epochs + 1))
    assert all(p["candidate"] and p["train_loss"] > 0 for p in history)
    trained = [h["train_loss"] for h in job.metrics["training"]["history"]]
    assert [p["train_loss"] for p in history][-epochs:] == pytest.approx(trained, abs=1e-5)
    # and the held-out score of each epoch (the console's validation chart)
    scored = [h["val_score"] for h in job.metrics["training"]["history"]]
    assert [p.get("val_score") for p in history][-epochs:] == pytest.approx(scored, abs=1e-5)
    assert store.list_files(f"checkpoints/{job_id}") == [], "checkpoints are dropped once the model is stored"
    types = [t for t, _ in events(worker_settings, job_id)]
    assert types[0] == "started" and "stage" in types and types[-1] == "succeeded"
    # where it ran: the same record in an event and in the metrics (issue 11)
    ran_on = job.metrics["ran_on"]
    assert ran_on["host"] == socket.gethostname() and ran_on["device"] in ("cpu", "cuda:0")
    assert [data for t, data in events(worker_settings, job_id) if t == "ran_on"] == [ran_on]
    # the ONNX packages, built here before the job succeeded, never by the API (issue 19)
    if importlib.util.find_spec("onnxruntime") is not None:
        assert store.exists(f"exports/{job.model_id}/onnx-fp32.zip")
        assert store.exists(f"exports/{job.model_id}/onnx-int8.zip")
        assert job.metrics["export"]["onnx-fp32"]["passed"] is True
        built = [data["variant"] for t, data in events(worker_settings, job_id) if t == "export_built"]
        assert built == ["onnx-fp32", "onnx-int8"] and types.index("export_built") < types.index("succeeded")
        with session_scope(worker_settings.database_url) as session:
            assert session.get(Model, job.model_id).metrics["export"] == job.metrics["export"]
        assert '<tr data-variant="onnx-fp32">' in store.open(f"{model.uri}/report.html", "rb").read().decode()


@pytest.mark.slow
def test_feature_cache_is_reused_by_the_next_job(worker_settings, make_job, store):
    job_id = make_job()
    assert run_job(job_id, worker_settings) == "succeeded"
    cached = store.list_files("cache/features")
    assert cached, "the teacher features were cached in the store"
    # one folder per tenant (issue 18): another tenant's job never finds (nor times) these entries
    tenant_id = load_job(worker_settings, job_id).tenant_id
    assert {path.split("/")[0] for path in cached} == {tenant_id}, cached
    other = make_job()
    assert run_job(other, worker_settings) == "succeeded"
    other_tenant = load_job(worker_settings, other).tenant_id
    both = store.list_files("cache/features")
    assert {path.split("/")[0] for path in both} == {tenant_id, other_tenant}
    assert len(both) == 2 * len(cached), "the other tenant extracted its own features"
    # the same tenant's next job reuses its entries
    again = make_job()
    with session_scope(worker_settings.database_url) as session:
        row = session.get(Job, again)
        for table, key in ((Teacher, row.teacher_id), (Dataset, row.train_dataset_id), (Dataset, row.eval_dataset_id)):
            if key is not None:
                session.get(table, key).tenant_id = tenant_id
        row.tenant_id = tenant_id
    assert run_job(again, worker_settings) == "succeeded"
    assert store.list_files("cache/features") == both, "the second job of a tenant reused its entries"


def test_finished_job_returns_early(worker_settings, make_job):
    job_id = make_job(status="failed", error={"code": "x", "message": "y"}, attempts=1)
    assert run_job(job_id, worker_settings) == "failed"
    job = load_job(worker_settings, job_id)
    assert job.attempts == 1 and job.error == {"code": "x", "message": "y"}


def test_duplicate_delivery_of_a_live_job_is_ignored(worker_settings, make_job):
    job_id = make_job(status="running", attempts=1, heartbeat_at=utcnow())
    assert run_job(job_id, worker_settings) == "skipped"
    job = load_job(worker_settings, job_id)
    assert job.status == "running" and job.attempts == 1


def test_cancel_before_start(worker_settings, make_job):
    job_id = make_job(cancel_requested=True)
    assert run_job(job_id, worker_settings) == "cancelled"
    job = load_job(worker_settings, job_id)
    assert job.status == "cancelled" and job.error["code"] == "cancelled" and job.model_id is None


@pytest.mark.slow
def test_cancel_while_training(worker_settings, make_job, monkeypatch):
    job_id = make_job(hyperparameters={"subclasses": 2, "epochs": 3, "batch_size": 8, "seed": 0, "augment": 0})
    monkeypatch.setattr(job_progress, "CANCEL_CHECK_INTERVAL_S", 0.0)
    write_progress = runner.ProgressWriter.__call__

    def cancel_when_training(self, progress):
        write_progress(self, progress)
        if progress.stage == "train":  # what POST /v1/jobs/{id}/cancel does to a running job
            _set(worker_settings, job_id, cancel_requested=True)

    monkeypatch.setattr(runner.ProgressWriter, "__call__", cancel_when_training)
    assert run_job(job_id, worker_settings) == "cancelled"
    job = load_job(worker_settings, job_id)
    assert job.status == "cancelled" and job.error["code"] == "cancelled" and job.model_id is None


def test_user_error_is_recorded_as_code_and_message(worker_settings, make_job, tmp_path):
    bad = write_csv(tmp_path / "bad.csv", make_text_rows(40, labels=("sports", "weather")))
    job_id = make_job(train_csv=bad)
    assert run_job(job_id, worker_settings) == "failed"
    error = load_job(worker_settings, job_id).error
    # the library's finer code, the one the API answers at submit (lelp.data.label_checks)
    assert set(error) == {"code", "message"} and error["code"] == "unknown_label", error


def test_crash_is_internal_error_without_traceback(worker_settings, make_job, monkeypatch, caplog):
    import lelp.pipeline

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail /etc/shadow")

    monkeypatch.setattr(lelp.pipeline, "distill", boom)
    job_id = make_job()
    assert run_job(job_id, worker_settings) == "failed"
    error = load_job(worker_settings, job_id).error
    assert error["code"] == "internal_error"
    assert "secret detail" not in error["message"] and "Traceback" not in error["message"]
    assert "secret detail" in caplog.text, "the traceback goes to the worker log"


def test_attempts_are_bounded(worker_settings, make_job):
    stale = utcnow() - timedelta(seconds=worker_settings.heartbeat_stale_s + 60)
    job_id = make_job(status="running", attempts=worker_settings.job_max_attempts, heartbeat_at=stale)
    assert run_job(job_id, worker_settings) == "failed"
    job = load_job(worker_settings, job_id)
    assert job.error["code"] == "too_many_attempts" and job.attempts == worker_settings.job_max_attempts + 1


@pytest.mark.slow
def test_killed_attempt_resumes_from_its_checkpoint(worker_settings, make_job, monkeypatch, store):
    """An attempt dies right after epoch 1's checkpoint; the next delivery resumes at epoch 1."""
    job_id = make_job(hyperparameters={"subclasses": 2, "epochs": 2, "seed": 0, "augment": 0})
    publish = runner.CheckpointSync.__call__

    def die_after_publishing(self, path):
        publish(self, path)
        raise KeyboardInterrupt  # a BaseException: nothing records it, like SIGKILL

    monkeypatch.setattr(runner.CheckpointSync, "__call__", die_after_publishing)
    with pytest.raises(KeyboardInterrupt):
        run_job(job_id, worker_settings)
    assert load_job(worker_settings, job_id).status == "running"
    assert store.list_files(f"checkpoints/{job_id}"), "the checkpoint reached the store"

    monkeypatch.setattr(runner.CheckpointSync, "__call__", publish)
    _set(worker_settings, job_id, heartbeat_at=utcnow() - timedelta(hours=1))  # the worker went silent
    assert run_job(job_id, worker_settings) == "succeeded"
    job = load_job(worker_settings, job_id)
    assert job.attempts == 2
    done = [data for kind, data in events(worker_settings, job_id) if kind == "succeeded"]
    assert done[0]["resumed_from_epoch"] == 1


@pytest.mark.slow
def test_partial_copy_of_a_killed_publish_is_removed_not_orphaned(worker_settings, make_job, store, tmp_path):
    """Deliveries killed between copying the artifact and committing left files; the winner removes them."""
    job_id = make_job()
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "half-written.bin").write_bytes(b"partial")
    model_dir = f"models/{runner.model_id_for(job_id)}"
    store.put_dir(stale, model_dir)  # the layout before claims: files straight in the folder
    store.put_dir(stale, f"{model_dir}/0123456789abcdef0123456789abcdef")  # a killed claim's folder
    assert run_job(job_id, worker_settings) == "succeeded"
    job = load_job(worker_settings, job_id)
    assert job.model_id == runner.model_id_for(job_id)
    with session_scope(worker_settings.database_url) as session:
        uri = session.get(Model, job.model_id).uri
    files = store.list_files(model_dir)
    assert "metrics.json" in store.list_files(uri)
    assert all(f.startswith(uri.rsplit("/", 1)[1] + "/") for f in files), files
