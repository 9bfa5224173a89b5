"""The routing rule of ``app.queue`` (issue 11): where ``auto`` jobs go, read from the workers table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.queue import GPU_KINDS, queue_for


@pytest.mark.parametrize(("device", "kind", "alive", "queue"), [
    ("gpu", "ngram", False, "gpu"),          # asked for: the submit check refuses it when no GPU worker lives
    ("gpu", "transformer", True, "gpu"),
    ("cpu", "transformer", True, "cpu"),     # asked for: never moved
    ("auto", "transformer", True, "gpu"),
    ("auto", "encoder_mlp", True, "gpu"),
    ("auto", "transformer", False, "cpu"),   # no GPU worker alive
    ("auto", "ngram", True, "cpu"),          # sparse lookups: a GPU would sit idle
    ("auto", "static", True, "cpu"),
    (None, "transformer", True, "cpu"),
])
def test_the_routing_rule(device, kind, alive, queue) -> None:  # noqa: ANN001
    assert queue_for(device, kind, alive) == queue


def test_gpu_kinds_are_student_kinds() -> None:
    from app.schemas.jobs import StudentSpec

    kinds = set(StudentSpec.model_fields["kind"].annotation.__args__)
    assert GPU_KINDS < kinds


def test_submit_routes_auto_jobs_by_the_live_workers(make_client, auth_a, job_body, db, monkeypatch) -> None:  # noqa: ANN001
    """Through the API's real enqueuer: only the queue a message goes to is recorded, not sent."""
    from app import queue
    from app.db import repositories as repo
    from app.db.models import Worker

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(queue.celery_app, "send_task", lambda name, args, queue: sent.append((args[0], queue)))
    client = make_client(real_broker=True)

    def submit(kind: str, device: str = "auto") -> str:
        body = {**job_body, "device": device, "student": {"kind": kind}}
        r = client.post("/v1/jobs", headers=auth_a, json=body)
        assert r.status_code == 202, r.text
        return sent[-1][1]

    assert submit("transformer") == "cpu", "no worker at all"
    repo.beat_worker(db, "embedded@host", ["cpu", "gpu"], ["cpu"])  # consumes gpu, but has no GPU
    db.commit()
    assert submit("transformer") == "cpu"
    repo.beat_worker(db, "gpu1@host", ["gpu"], ["cpu", "cuda:0"])
    db.commit()
    assert submit("transformer") == "gpu"
    assert submit("ngram") == "cpu" and submit("static") == "cpu"
    assert submit("transformer", "cpu") == "cpu" and submit("ngram", "gpu") == "gpu"
    gpu = db.get(Worker, "gpu1@host")
    gpu.heartbeat_at = gpu.heartbeat_at - timedelta(seconds=client.app.state.settings.heartbeat_stale_s + 1)
    db.commit()
    assert submit("transformer") == "cpu", "a GPU worker whose heartbeat went stale is gone"
    assert len(sent) == 8


def test_the_broker_mark_tells_a_redis_that_restarted_empty() -> None:
    """``broker_emptied`` is True until the sweep marks the broker, and again once its data is gone."""
    import redis

    from app.queue import BROKER_MARK_KEY, broker_emptied, mark_broker
    from tests.app.conftest import TEST_BROKER_URL

    client = redis.Redis.from_url(TEST_BROKER_URL)
    try:
        client.delete(BROKER_MARK_KEY)
        assert broker_emptied(TEST_BROKER_URL)
        mark_broker(TEST_BROKER_URL)
        assert not broker_emptied(TEST_BROKER_URL)
        client.flushdb()  # what a restart without persistence does to every key, messages included
        assert broker_emptied(TEST_BROKER_URL)
    finally:
        client.delete(BROKER_MARK_KEY)
        client.close()
    assert not broker_emptied("sqla+sqlite:///nowhere.db"), "other transports keep no mark (queued_stale_s covers them)"
