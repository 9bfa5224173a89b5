"""The heartbeat sweeper requeues jobs whose worker vanished, and only those."""

from __future__ import annotations

from datetime import timedelta

import pytest
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


def test_orphans_are_requeued_at_embedded_start_once_their_heartbeat_is_old(worker_settings, make_job, sent):
    """``lelp serve`` starts: a job that beat a moment ago is requeued only after a few silent beats."""
    job_id = make_job(status="running", attempts=1, heartbeat_at=utcnow())
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # time passes: the heartbeat ages
        waited.append(seconds)
        with session_scope(worker_settings.database_url) as session:
            session.execute(sa.update(Job).where(Job.id == job_id)
                            .values(heartbeat_at=utcnow() - timedelta(seconds=seconds + 1)))

    assert requeue_orphans(worker_settings, sleep=sleep) == [job_id]
    assert 0 < waited[0] <= 3 * worker_settings.heartbeat_interval_s
    assert load_job(worker_settings, job_id).status == "queued"


def test_orphans_whose_worker_still_beats_are_left_to_it(worker_settings, make_job, sent):
    """An orphaned worker of an earlier run still beats: its job is not requeued under it (issue 18)."""
    job_id = make_job(status="running", attempts=1, heartbeat_at=utcnow())

    def sleep(seconds: float) -> None:  # the other worker beats meanwhile
        with session_scope(worker_settings.database_url) as session:
            session.execute(sa.update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))

    assert requeue_orphans(worker_settings, sleep=sleep) == []
    assert load_job(worker_settings, job_id).status == "running" and sent == []


def _age(settings, job_id: str, seconds: float) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(sa.update(Job).where(Job.id == job_id)
                        .values(updated_at=utcnow() - timedelta(seconds=seconds)))


def test_a_job_committed_but_never_sent_is_sent_within_the_grace(worker_settings, make_job, sent):
    """The process that committed the job died before its send: the outbox mark is still unset."""
    job_id = make_job()  # queued, enqueued_at NULL: nobody sent it
    assert sweep(worker_settings) == [], "within the grace its own process may still send it"
    _age(worker_settings, job_id, worker_settings.enqueue_grace_s + 1)
    assert sweep(worker_settings) == [job_id]
    assert sent == [(job_id, "cpu")]
    assert load_job(worker_settings, job_id).enqueued_at is not None, "the send was marked"
    assert sweep(worker_settings) == [], "a marked job is not sent again"


def test_a_send_that_fails_leaves_the_job_owed(worker_settings, make_job):
    job_id = make_job()
    _age(worker_settings, job_id, worker_settings.enqueue_grace_s + 1)

    def broker_down(job_id: str, device: str) -> None:
        raise ConnectionError("broker down")

    assert sweep(worker_settings, send=broker_down) == []
    assert load_job(worker_settings, job_id).enqueued_at is None
    _age(worker_settings, job_id, worker_settings.enqueue_grace_s + 1)
    calls = []
    assert sweep(worker_settings, send=lambda j, d: calls.append(j)) == [job_id] and calls == [job_id]


def test_a_requeued_job_is_owed_its_message_and_loses_its_claim(worker_settings, make_job):
    """A sweeper killed between its requeue commit and its send: another sweep sends it."""
    stale = utcnow() - timedelta(seconds=worker_settings.heartbeat_stale_s + 5)
    job_id = make_job(status="running", attempts=1, heartbeat_at=stale, claim_token="a" * 32,
                      enqueued_at=utcnow() - timedelta(minutes=5))

    def killed(job_id: str, device: str) -> None:
        raise SystemExit(137)  # the sweeping process dies right after its commit

    try:
        sweep(worker_settings, send=killed)
    except SystemExit:
        pass
    job = load_job(worker_settings, job_id)
    assert job.status == "queued" and job.claim_token is None and job.enqueued_at is None
    assert [d for t, d in events(worker_settings, job_id) if t == "requeued"][0]["by"]
    _age(worker_settings, job_id, worker_settings.enqueue_grace_s + 1)
    calls = []
    assert sweep(worker_settings, send=lambda j, d: calls.append(j)) == [job_id]


def test_a_broker_that_restarted_empty_makes_every_queued_job_owed(worker_settings, make_job, monkeypatch):
    import app.queue

    sent_long_ago = utcnow() - timedelta(minutes=5)
    queued = make_job(enqueued_at=sent_long_ago)
    running = make_job(status="running", attempts=1, heartbeat_at=utcnow(), enqueued_at=sent_long_ago)
    _age(worker_settings, queued, 60)
    marks = []
    monkeypatch.setattr(app.queue, "broker_emptied", lambda url: not marks)
    monkeypatch.setattr(app.queue, "mark_broker", lambda url: marks.append(url))
    calls = []
    assert sweep(worker_settings, send=lambda j, d: calls.append(j)) == [queued]
    assert marks == [worker_settings.broker_url], "the mark is set once the jobs are owed"
    assert load_job(worker_settings, running).status == "running", "a running job keeps its worker"
    assert sweep(worker_settings, send=lambda j, d: calls.append(j)) == [] and calls == [queued]


def test_the_sweeper_thread_judges_no_heartbeat_right_after_a_database_outage(worker_settings, monkeypatch):
    """While the database was down no worker could beat: heartbeats are judged again only a stale window later."""
    from app.services import sweeper as module

    calls = []

    def fake_sweep(settings, requeue_running=True, audit_broker=True):  # noqa: ANN001
        calls.append(requeue_running)
        if len(calls) == 2:
            raise ConnectionError("database down")

    monkeypatch.setattr(module, "sweep", fake_sweep)
    thread = module.SweeperThread(worker_settings.model_copy(update={"sweep_interval_s": 0.01}))
    assert thread.requeues_running()
    thread.start()
    import time

    deadline = time.monotonic() + 10
    while len(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.stop()
    assert calls[:2] == [True, True] and calls[2:4] == [False, False], calls
    assert not thread.requeues_running(), "heartbeat_stale_s has not passed since the outage"


# --- the broker audit: a queued job whose message the Redis broker no longer holds ---------------------


@pytest.fixture
def redis_broker(worker_settings):
    """``worker_settings`` on the real test Redis, its database emptied, marked (no restart to detect)."""
    import redis

    from app.queue import mark_broker
    from tests.app.conftest import TEST_BROKER_URL

    client = redis.Redis.from_url(TEST_BROKER_URL)
    client.flushdb()
    mark_broker(TEST_BROKER_URL)
    settings = worker_settings.model_copy(update={"broker_url": TEST_BROKER_URL})
    yield settings, client
    client.flushdb()
    client.close()


def _send_real(settings, job_id: str, task: str | None = None) -> None:
    """A message exactly as the service sends it (Celery + kombu on Redis)."""
    from app.queue import TASK_NAME, make_celery

    app = make_celery(settings, set_as_current=False)
    try:
        app.send_task(task or TASK_NAME, args=[job_id], queue="cpu")
    finally:
        app.close()


def _take(client, at: float) -> None:
    """What kombu does when a worker takes the oldest message: off the list, into ``unacked`` stamped ``at``."""
    import json

    raw = client.rpop("cpu")
    tag = f"tag-{at}"
    client.hset("unacked", tag, json.dumps([json.loads(raw), "", "cpu"]))
    client.zadd("unacked_index", {tag: at})


def test_the_broker_audit_reads_which_jobs_redis_holds(redis_broker, make_job):
    from app.queue import WEBHOOK_TASK_NAME, job_messages

    settings, client = redis_broker
    _send_real(settings, "job_taken")
    _send_real(settings, "job_waiting")
    _send_real(settings, "job_webhook_only", task=WEBHOOK_TASK_NAME)
    _take(client, 1234.5)  # the oldest: job_taken
    client.rpush("cpu", b"not a message")
    held = job_messages(settings.broker_url)
    assert held.waiting == {"job_waiting"}, "other tasks and unreadable entries are no job's message"
    assert held.reserved_at == {"job_taken": 1234.5}
    assert job_messages("sqla+sqlite:///nowhere.db") is None, "other transports are not read"


def test_a_queued_job_whose_message_is_gone_or_dropped_is_sent_again(redis_broker, make_job):
    """Lost with a broken link, or taken by a worker that dropped it: sent again; nothing else is."""
    import time

    settings, client = redis_broker
    long_ago = utcnow() - timedelta(minutes=5)
    lost, waiting, taken_now, dropped, running = (make_job(enqueued_at=long_ago) for _ in range(5))
    just_sent = make_job(enqueued_at=utcnow())  # within the grace: its message may be on the way
    for job_id in (lost, waiting, taken_now, dropped, running, just_sent):
        _age(settings, job_id, 60)
    with session_scope(settings.database_url) as session:
        session.execute(sa.update(Job).where(Job.id == running).values(status="running", heartbeat_at=utcnow()))
    for job_id in (dropped, taken_now, waiting):
        _send_real(settings, job_id)
    _take(client, time.time() - settings.heartbeat_stale_s - 5)  # dropped: taken long ago, still queued
    _take(client, time.time())  # taken_now: a worker is about to start it
    calls = []
    assert sorted(sweep(settings, send=lambda j, d: calls.append(j))) == sorted([lost, dropped])
    assert sorted(calls) == sorted([lost, dropped])
    assert load_job(settings, running).status == "running"
    assert sweep(settings, send=lambda j, d: calls.append(j), audit_broker=False) == []
    assert sweep(settings, send=lambda j, d: calls.append(j), audit_broker=False) == [], "sent once"


def test_the_sweeper_thread_reads_the_broker_only_every_audit_interval(worker_settings, monkeypatch):
    import time

    from app.services import sweeper as module

    audits: list[bool] = []
    monkeypatch.setattr(module, "sweep", lambda settings, requeue_running=True, audit_broker=True:
                        audits.append(audit_broker))
    settings = worker_settings.model_copy(update={"sweep_interval_s": 0.01, "broker_audit_interval_s": 3600})
    thread = module.SweeperThread(settings).start()
    try:
        deadline = time.monotonic() + 10
        while len(audits) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        thread.stop()
    assert len(audits) >= 5 and audits[0] is True and not any(audits[1:]), audits
