"""Two deliveries of one job never both write it: every write is fenced by the delivery's claim.

The situation (issue 20's cut link, issue 18's orphaned embedded worker): delivery A runs a
job; its worker is cut off past ``heartbeat_stale_s``; a sweep requeues the job (A's claim
dropped) and delivery B takes it. When A comes back, its progress, heartbeat, checkpoints,
artifact and final state must all change nothing, and B's files must be left alone.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db import job_states
from app.db.base import utcnow
from app.db.models import Job, Model
from app.db.session import session_scope
from tests.worker.conftest import events, load_job
from worker import runner
from worker.claim import Claim, ClaimLost
from worker.failures import record_failure
from worker.job_progress import CancelCheck, ProgressWriter
from worker.runner import run_job
from worker.store_sync import CheckpointSync


def _claim(settings, job_id: str) -> Claim:
    with session_scope(settings.database_url) as session:
        token = job_states.claim(session, job_id, utcnow() - timedelta(seconds=settings.heartbeat_stale_s))
    assert token is not None
    return Claim(settings.database_url, job_id, token)


def _swept(settings, job_id: str) -> None:
    """What the sweep does to a job whose worker went silent: heartbeat aged, requeued."""
    with session_scope(settings.database_url) as session:
        session.execute(sa.update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        assert job_states.requeue_stale(session, job_id, utcnow() - timedelta(seconds=1))


def _snapshot(store, prefix: str) -> dict[str, str]:
    return {rel: hashlib.sha256(store.open(f"{prefix}/{rel}").read()).hexdigest()
            for rel in store.list_files(prefix)}


def test_every_write_of_a_delivery_that_lost_its_claim_changes_nothing(worker_settings, make_job, store, tmp_path):
    job_id = make_job()
    a = _claim(worker_settings, job_id)
    _swept(worker_settings, job_id)
    b = _claim(worker_settings, job_id)
    assert a.token != b.token

    # B checkpoints: its folder is promoted.
    local_b = tmp_path / "b"
    local_b.mkdir()
    (local_b / "00-kd.pt").write_bytes(b"epoch 2 of B")
    sync_b = CheckpointSync(store, job_id, local_b, token=b.token, promote=b.promote_checkpoint)
    sync_b(str(local_b / "00-kd.pt"))
    assert load_job(worker_settings, job_id).checkpoint_uri == f"checkpoints/{job_id}/{b.token}"
    before = _snapshot(store, f"checkpoints/{job_id}")

    # A comes back: its checkpoint is written to its own folder, refused, removed.
    local_a = tmp_path / "a"
    local_a.mkdir()
    (local_a / "00-kd.pt").write_bytes(b"epoch 1 of A")
    sync_a = CheckpointSync(store, job_id, local_a, token=a.token, promote=a.promote_checkpoint)
    with pytest.raises(ClaimLost):
        sync_a(str(local_a / "00-kd.pt"))
    assert _snapshot(store, f"checkpoints/{job_id}") == before
    assert load_job(worker_settings, job_id).checkpoint_uri == f"checkpoints/{job_id}/{b.token}"

    # ... its progress and heartbeat are not written, and training stops at the next callback.
    progress_before = load_job(worker_settings, job_id).progress
    writer = ProgressWriter(worker_settings.database_url, job_id, claim=a)

    class Report:
        stage, epoch, step, total_steps, loss, message = "train", 1, 1, 10, 0.5, None

    with pytest.raises(ClaimLost):
        writer(Report())
    assert load_job(worker_settings, job_id).progress == progress_before
    with pytest.raises(ClaimLost):
        CancelCheck(worker_settings.database_url, job_id, claim=a)()
    assert not a.beat() and b.beat()

    # ... and a failure it would record is not recorded.
    assert record_failure(worker_settings.database_url, job_id, RuntimeError("late"), claim_token=a.token) == \
        "claim_lost"
    job = load_job(worker_settings, job_id)
    assert job.status == "running" and job.claim_token == b.token and job.error is None


@pytest.mark.slow
def test_a_delivery_that_lost_its_claim_cannot_overwrite_the_published_artifact(worker_settings, make_job, store,
                                                                              tmp_path):
    """B finished and published; A, back from a cut, reaches its publish with a complete artifact of its own."""
    job_id = make_job()
    a = _claim(worker_settings, job_id)
    _swept(worker_settings, job_id)
    assert run_job(job_id, worker_settings) == "succeeded"  # delivery B, start to end
    job = load_job(worker_settings, job_id)
    with session_scope(worker_settings.database_url) as session:
        published = session.get(Model, job.model_id).uri
    before = _snapshot(store, f"models/{job.model_id}")
    succeeded_events = [t for t, _ in events(worker_settings, job_id)].count("succeeded")

    artifact = tmp_path / "artifact-of-a"
    artifact.mkdir()
    (artifact / "metrics.json").write_text('{"from": "A"}')
    (artifact / "model.safetensors").write_bytes(b"A's weights")
    inputs = runner.read_inputs  # the real reader, on the job row
    with session_scope(worker_settings.database_url) as session:
        job_inputs = inputs(session, session.get(Job, job_id))
    checkpoints = CheckpointSync(store, job_id, tmp_path / "ckpt-a", token=a.token, promote=a.promote_checkpoint)
    with pytest.raises(ClaimLost):
        runner._publish(job_inputs, worker_settings, store, artifact, {"student": {}}, 0, checkpoints, a)
    # Even past the heartbeat check (a delivery that lost its claim while uploading):
    a.beat = lambda: True  # type: ignore[method-assign]
    with pytest.raises(ClaimLost):
        runner._publish(job_inputs, worker_settings, store, artifact, {"student": {}}, 0, checkpoints, a)

    assert _snapshot(store, f"models/{job.model_id}") == before, "the published artifact is untouched"
    assert not store.list_files(f"models/{job.model_id}/{a.token}"), "A's own copy was removed"
    after = load_job(worker_settings, job_id)
    assert after.status == "succeeded" and after.model_id == job.model_id
    with session_scope(worker_settings.database_url) as session:
        assert session.get(Model, job.model_id).uri == published
        assert session.scalar(sa.select(sa.func.count()).select_from(Model).where(Model.job_id == job_id)) == 1
    assert [t for t, _ in events(worker_settings, job_id)].count("succeeded") == succeeded_events == 1


def test_a_running_delivery_stops_when_its_job_is_taken_over(worker_settings, make_job, store, monkeypatch):
    """The real flow: mid-training the job is requeued and claimed elsewhere; this delivery stops, writes nothing."""
    job_id = make_job(hyperparameters={"subclasses": 2, "epochs": 3, "batch_size": 8, "seed": 0, "augment": 0})
    write_progress = runner.ProgressWriter.__call__
    taken: list[str] = []

    def taken_over_during_training(self, progress):
        if progress.stage == "train" and not taken:  # the sweep and another delivery, while this one was away
            _swept(worker_settings, job_id)
            taken.append(_claim(worker_settings, job_id).token)
        write_progress(self, progress)

    monkeypatch.setattr(runner.ProgressWriter, "__call__", taken_over_during_training)
    assert run_job(job_id, worker_settings) == runner.CLAIM_LOST
    job = load_job(worker_settings, job_id)
    assert job.status == "running" and job.claim_token == taken[0] and job.model_id is None
    assert store.list_files(f"models/{runner.model_id_for(job_id)}") == []
    assert job.checkpoint_uri is None, "nothing this delivery wrote was promoted"
    assert [p for p in store.list_files(f"checkpoints/{job_id}")] == []


def test_a_resumed_delivery_reads_the_promoted_folder_only(worker_settings, make_job, store, tmp_path):
    job_id = make_job()
    a = _claim(worker_settings, job_id)
    local = tmp_path / "a"
    local.mkdir()
    for name, body in (("00-lelp.pt", b"candidate 0"), ("01-kd.pt", b"candidate 1")):
        (local / name).write_bytes(body)
    CheckpointSync(store, job_id, local, token=a.token, promote=a.promote_checkpoint)(str(local / "01-kd.pt"))
    store.put_dir(local, f"checkpoints/{job_id}/ffffffffffffffffffffffffffffffff")  # a lost delivery's folder
    _swept(worker_settings, job_id)
    b = _claim(worker_settings, job_id)
    current = load_job(worker_settings, job_id).checkpoint_uri
    sync_b = CheckpointSync(store, job_id, tmp_path / "b", token=b.token, current=current,
                            promote=b.promote_checkpoint)
    assert sync_b.download() == ["00-lelp.pt", "01-kd.pt"]
    (tmp_path / "b" / "01-kd.pt").write_bytes(b"candidate 1, one epoch more")
    sync_b(str(tmp_path / "b" / "01-kd.pt"))
    # B's folder is whole (the inherited candidate too) and A's is gone.
    assert store.list_files(f"checkpoints/{job_id}/{b.token}") == ["00-lelp.pt", "01-kd.pt"]
    assert not store.list_files(f"checkpoints/{job_id}/{a.token}")


def test_checkpoints_left_by_the_layout_before_claims_are_resumed(worker_settings, make_job, store, tmp_path):
    job_id = make_job()
    old = tmp_path / "old"
    old.mkdir()
    (old / "00-kd.pt").write_bytes(b"from before the upgrade")
    store.put_dir(old, f"checkpoints/{job_id}")
    sync = CheckpointSync(store, job_id, tmp_path / "local", token="t" * 32, promote=lambda uri: (True, None))
    assert sync.download() == ["00-kd.pt"]
    assert Path(tmp_path / "local" / "00-kd.pt").read_bytes() == b"from before the upgrade"
