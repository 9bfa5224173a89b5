"""A finished job's webhook, delivered by ``worker.webhooks.deliver`` to a real local HTTP receiver.

(tests/e2e/test_webhooks_flow.py runs the same through the Celery task and its retries.)
"""

from __future__ import annotations

import pytest

from app.db import job_states
from app.db.session import session_scope
from app.services import webhooks
from tests.webhook_receiver import Receiver
from tests.worker.conftest import events, load_job
from worker.webhooks import backoff_s, deliver

SECRET = "s3cret-for-tests"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def hook_settings(worker_settings):
    return worker_settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"], "webhook_secret": SECRET,
                                              "webhook_max_attempts": 3, "webhook_backoff_s": 0.5})


def _finish(settings, job_id: str, status: str = "failed") -> None:
    with session_scope(settings.database_url) as session:
        assert job_states.finish(session, job_id, status, error={"code": "x", "message": "it broke"})


def test_a_finished_job_is_posted_signed_and_recorded(hook_settings, make_job, receiver):
    job_id = make_job(webhook_url=receiver.url)
    assert deliver(hook_settings, job_id, attempt=1).result == "skipped"  # not finished: nothing owed
    _finish(hook_settings, job_id)
    assert load_job(hook_settings, job_id).webhook_state == "pending"  # owed with the final state
    assert deliver(hook_settings, job_id, attempt=1).result == "delivered"
    [request] = receiver.requests
    assert request.path == "/hooks/lelp"
    assert request.headers["X-Lelp-Event"] == "job.failed" and request.headers["X-Lelp-Attempt"] == "1"
    assert webhooks.verify_signature(SECRET, request.headers["X-Lelp-Signature"], request.body)
    assert not webhooks.verify_signature("another secret", request.headers["X-Lelp-Signature"], request.body)
    assert not webhooks.verify_signature(SECRET, request.headers["X-Lelp-Signature"], request.body + b" ")
    body = request.json
    assert body["type"] == "job.failed" and body["data"]["id"] == job_id
    assert body["data"]["status"] == "failed" and body["data"]["error"] == {"code": "x", "message": "it broke"}
    assert load_job(hook_settings, job_id).webhook_state == "delivered"
    [(kind, data)] = [e for e in events(hook_settings, job_id) if e[0] == "webhook"]
    assert data["delivered"] and data["status_code"] == 200 and data["attempt"] == 1
    assert deliver(hook_settings, job_id, attempt=1).result == "skipped"  # delivered once, not again
    assert len(receiver.requests) == 1


def test_failed_tries_are_retried_with_backoff_then_given_up(hook_settings, make_job, receiver):
    receiver.answers = [500, 503, 502]
    job_id = make_job(webhook_url=receiver.url)
    _finish(hook_settings, job_id)
    first, second = deliver(hook_settings, job_id, 1), deliver(hook_settings, job_id, 2)
    assert (first.result, first.retry_in_s, second.result, second.retry_in_s) == ("retry", 0.5, "retry", 1.0)
    assert deliver(hook_settings, job_id, 3).result == "gave_up"  # webhook_max_attempts = 3
    assert load_job(hook_settings, job_id).webhook_state == "failed"
    tries = [data for kind, data in events(hook_settings, job_id) if kind == "webhook"]
    assert [(t["attempt"], t["status_code"], t["delivered"]) for t in tries] == [(1, 500, False), (2, 503, False),
                                                                               (3, 502, False)]
    assert tries[-1]["gave_up"] and "retry_in_s" not in tries[-1]
    assert [r.headers["X-Lelp-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert backoff_s(hook_settings, 4) == 4.0 and backoff_s(hook_settings, 40) == 3600.0


def test_a_host_no_longer_allowed_is_not_called(hook_settings, make_job, receiver):
    job_id = make_job(webhook_url=receiver.url)
    _finish(hook_settings, job_id, "cancelled")
    removed = hook_settings.model_copy(update={"webhook_allowed_hosts": ["hooks.example.com"]})
    assert deliver(removed, job_id, 1).result == "gave_up"
    assert receiver.requests == []
    [(kind, data)] = [e for e in events(removed, job_id) if e[0] == "webhook"]
    assert data["error"] == "host_not_allowed" and not data["delivered"]


def test_an_unreachable_receiver_is_a_failed_try(hook_settings, make_job, receiver):
    job_id = make_job(webhook_url=receiver.url)
    receiver.stop()  # nothing listens on the port now
    _finish(hook_settings, job_id)
    outcome = deliver(hook_settings, job_id, 1)
    assert outcome.result == "retry"
    [(kind, data)] = [e for e in events(hook_settings, job_id) if e[0] == "webhook"]
    assert data["status_code"] is None and "ConnectError" in data["error"]


def test_a_job_without_a_webhook_owes_nothing(hook_settings, make_job):
    job_id = make_job()
    _finish(hook_settings, job_id, "failed")
    assert load_job(hook_settings, job_id).webhook_state is None


def test_an_owed_hand_off_is_sent_by_the_recovery_sweep(hook_settings, make_job, sent, monkeypatch):
    """The process that finished the job died before handing the delivery to the broker: the sweep sends it."""
    from datetime import timedelta

    import app.queue
    from app.db.base import utcnow
    from app.services.recovery import sweep

    handed: list[str] = []
    broker_up = {"ok": False}

    def enqueue(job_id: str) -> None:
        if not broker_up["ok"]:
            raise ConnectionError("broker down")
        handed.append(job_id)

    monkeypatch.setattr(app.queue, "enqueue_webhook", enqueue)
    job_id = make_job(webhook_url="http://127.0.0.1:9/hook")
    _finish(hook_settings, job_id)
    later = utcnow() + timedelta(seconds=hook_settings.enqueue_grace_s + 1)
    sweep(hook_settings, now=later)  # the broker refuses: still owed
    assert handed == [] and load_job(hook_settings, job_id).webhook_sent_at is None
    broker_up["ok"] = True
    sweep(hook_settings, now=utcnow())  # within the grace: the finishing process may still send it
    assert handed == []
    sweep(hook_settings, now=later)
    assert handed == [job_id] and load_job(hook_settings, job_id).webhook_sent_at is not None
    sweep(hook_settings, now=later)
    assert handed == [job_id]  # sent once
