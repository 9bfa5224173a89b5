"""The heartbeat sweeper requeues jobs whose worker vanished, and only those."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app.db.base import utcnow
from app.db.models import Job
from app.db.session import session_scope
from app.services.recovery import requeue_orphans, sweep
from tests.worker.conftest import events, load_job


def test_stale_running_job_is_requeued(worker_settings, make_job, sent):
    stale = utcnow() - timedelta(seconds=worker_settings.heartbeat_stale_s + 5)
    dead = make_job(status="running", attempts=1, heartbeat_at=stale, device="gpu")
    alive = make_job(status="running", attempts=1, heartbeat_at=utcnow())
    finished = make_job(status="succeeded", attempts=1, heartbeat_at=stale)

    assert sweep(worker_settings) == [dead]
    assert sent == [(dead, "gpu")]
    assert load_job(worker_settings, dead).status == "queued"
    assert load_job(worker_settings, alive).status == "running"
    assert load_job(worker_settings, finished).status == "succeeded"
    assert "requeued" in [t for t, _ in events(worker_settings, dead)]
    assert sweep(worker_settings) == [], "a second sweep finds nothing more"


def test_queued_job_never_picked_up_is_sent_again(worker_settings, make_job, sent):
    job_id = make_job()
    assert sweep(worker_settings) == []
    with session_scope(worker_settings.database_url) as session:
        session.execute(sa.update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(days=1)))
    assert sweep(worker_settings) == [job_id]
    assert sweep(worker_settings) == [], "re-sending touched the job, so it is not sent twice in a row"
    assert sent == [(job_id, "cpu")]


def test_orphans_are_requeued_at_embedded_start(worker_settings, make_job, sent):
    job_id = make_job(status="running", attempts=1, heartbeat_at=utcnow())
    assert requeue_orphans(worker_settings) == [job_id]
    assert load_job(worker_settings, job_id).status == "queued"
