"""Issue 14: a hostile teacher blocks the worker for at most one short delivery.

Real tiny distillations on SQLite through ``run_job`` (no Celery): a teacher whose tokenizer
panics on a training row, a teacher too big for the free memory, a cancelled job's
checkpoints, and failure messages that used to show server paths.
"""

from __future__ import annotations

import shutil
import time

import pytest
import sqlalchemy as sa

from app.db.models import Job
from app.db.session import session_scope
from tests.panicky import PANIC_TEXT, make_panicking_tokenizer
from tests.tiny import make_text_rows, write_csv
from tests.worker.conftest import load_job
from worker import job_progress, runner
from worker.runner import run_job


def test_a_teacher_whose_tokenizer_panics_fails_the_job_at_once(worker_settings, make_job, store, tiny_teacher_dir,
                                                                tmp_path):  # noqa: ANN001
    teacher = tmp_path / "panicky"
    shutil.copytree(tiny_teacher_dir, teacher)
    make_panicking_tokenizer(teacher)
    rows = make_text_rows(60) + [{"text": PANIC_TEXT, "label": "positive"}]
    job_id = make_job(teacher_dir=teacher, train_csv=write_csv(tmp_path / "train.csv", rows))
    started = time.perf_counter()
    assert run_job(job_id, worker_settings) == "failed"  # before: PanicException escaped run_job
    elapsed = time.perf_counter() - started
    job = load_job(worker_settings, job_id)
    assert job.error["code"] == "model_failed", job.error
    assert "PanicException" in job.error["message"] and job.attempts == 1
    assert str(worker_settings.data_dir) not in job.error["message"]
    assert elapsed < 60, elapsed
    assert store.list_files(f"checkpoints/{job_id}") == []
    print(f"panicking teacher: job failed after {elapsed:.1f} s, 1 delivery")


def test_a_teacher_bigger_than_the_free_memory_fails_fast(worker_settings, make_job, monkeypatch):  # noqa: ANN001
    import lelp.uploads.model_limits

    monkeypatch.setattr(lelp.uploads.model_limits, "available_memory_bytes", lambda: 1_000_000)  # 1 MB free
    job_id = make_job()
    started = time.perf_counter()
    assert run_job(job_id, worker_settings) == "failed"
    elapsed = time.perf_counter() - started
    job = load_job(worker_settings, job_id)
    assert job.error["code"] == "insufficient_memory", job.error
    assert "GiB" in job.error["message"] and job.attempts == 1
    assert elapsed < 60


@pytest.mark.slow
def test_a_cancelled_job_leaves_no_checkpoints(worker_settings, make_job, monkeypatch, store):  # noqa: ANN001
    job_id = make_job(hyperparameters={"subclasses": 2, "epochs": 4, "batch_size": 8, "seed": 0, "augment": 0})
    monkeypatch.setattr(job_progress, "CANCEL_CHECK_INTERVAL_S", 0.0)
    write_progress = runner.ProgressWriter.__call__
    seen: list[list[str]] = []

    def cancel_at_epoch_3(self, progress):  # noqa: ANN001, ANN202
        write_progress(self, progress)
        if progress.stage == "train" and (progress.epoch or 0) >= 3:
            seen.append(store.list_files(f"checkpoints/{job_id}"))
            with session_scope(worker_settings.database_url) as session:
                session.execute(sa.update(Job).where(Job.id == job_id).values(cancel_requested=True))

    monkeypatch.setattr(runner.ProgressWriter, "__call__", cancel_at_epoch_3)
    assert run_job(job_id, worker_settings) == "cancelled"
    assert seen and seen[0], "checkpoints existed while it trained"
    assert store.list_files(f"checkpoints/{job_id}") == []  # before: left behind for ever


def test_failure_messages_name_ids_not_server_paths(worker_settings, make_job, store):  # noqa: ANN001
    job_id = make_job()
    job = load_job(worker_settings, job_id)
    store.delete(f"teachers/{job.teacher_id}/model.safetensors")  # the store lost the weights
    assert run_job(job_id, worker_settings) == "failed"
    message = load_job(worker_settings, job_id).error["message"]
    assert f"teacher {job.teacher_id}" in message, message
    assert str(worker_settings.data_dir) not in message and "/tmp" not in message, message


def test_a_stored_teacher_whose_config_is_a_memory_bomb_fails_in_one_short_delivery(
        worker_settings, make_job, tiny_teacher_dir, tmp_path) -> None:  # noqa: ANN001
    """A teacher stored before the upload checks existed: the worker refuses it before allocating.

    Before: transformers allocated the 8192 x 48 model (~220 MB/s until killed, three deliveries, ~7.5 min).
    """
    import json

    teacher = tmp_path / "bomb"
    shutil.copytree(tiny_teacher_dir, teacher)
    config = json.loads((teacher / "config.json").read_text())
    config.update(hidden_size=8192, num_hidden_layers=48, intermediate_size=32768)
    (teacher / "config.json").write_text(json.dumps(config))
    job_id = make_job(teacher_dir=teacher)
    started = time.perf_counter()
    assert run_job(job_id, worker_settings) == "failed"
    elapsed = time.perf_counter() - started
    job = load_job(worker_settings, job_id)
    assert job.error["code"] == "invalid_teacher" and "LELP_MAX_MODEL_PARAMETERS" in job.error["message"]
    assert job.attempts == 1 and elapsed < 30, elapsed
    print(f"memory-bomb config: job failed after {elapsed:.1f} s, 1 delivery")
