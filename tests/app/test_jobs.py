"""Jobs: submit (202 + Location), idempotency under concurrency, limits, list, cancel, events."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app.db import job_states
from app.db import repositories as repo
from app.db.base import utcnow
from app.db.models import Job


def _submit(client, headers, body, key=None):  # noqa: ANN001, ANN202
    extra = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/jobs", headers={**headers, **extra}, json=body)


def test_submit_returns_202_location_and_the_job(client, auth_a, job_body, enqueued, db) -> None:  # noqa: ANN001
    r = _submit(client, auth_a, job_body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["attempts"] == 0 and job["model_id"] is None
    assert job["method"] == "lelp" and job["device"] == "auto"
    assert job["hyperparameters"] == {"epochs": 1, "subclasses": 2}
    assert job["progress"]["stage"] == "queued" and job["error"] is None and job["metrics"] is None
    assert enqueued == [(job["id"], "auto")]
    got = client.get(r.headers["Location"], headers=auth_a)
    assert got.status_code == 200 and got.json() == job
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=auth_a).json()
    assert [e["type"] for e in events["data"]] == ["created"]


@pytest.mark.parametrize("change, param", [
    ({"teacher_id": "tch_missing"}, "teacher_id"),
    ({"train_dataset_id": "ds_missing"}, "train_dataset_id"),
    ({"eval_dataset_id": "ds_missing"}, "eval_dataset_id"),
])
def test_unknown_references_are_404(client, auth_a, job_body, change, param, enqueued) -> None:  # noqa: ANN001
    r = _submit(client, auth_a, {**job_body, **change})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == param and r.json()["error"]["code"].endswith("_not_found")
    assert enqueued == []


def test_the_old_spelling_of_the_student_kind_is_still_accepted(client, auth_a, job_body) -> None:  # noqa: ANN001
    """``student.architecture`` (before ``kind``): stored and answered as ``kind``."""
    r = _submit(client, auth_a, {**job_body, "student": {"architecture": "static"}})
    assert r.status_code == 202, r.text
    assert r.json()["student"]["kind"] == "static" and "architecture" not in r.json()["student"]
    bad = _submit(client, auth_a, {**job_body, "student": {"architecture": "lstm"}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("change, param", [
    ({"method": "magic"}, "method"),
    ({"device": "tpu"}, "device"),
    ({"student": {"kind": "lstm"}}, "student.kind"),
    ({"student": {"kind": "ngram", "layers": 3}}, "student.layers"),
    ({"hyperparameters": {"subclasses": 0}}, "hyperparameters.subclasses"),
    ({"hyperparameters": {"subclasses": "many"}}, "hyperparameters.subclasses"),
    ({"hyperparameters": {"alpha": 2}}, "hyperparameters.alpha"),
    ({"hyperparameters": {"alpha": "some"}}, "hyperparameters.alpha"),
    ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs"),
    ({"hyperparameters": {"lr": 0.1}}, "hyperparameters.lr"),
    ({"priority": "high"}, "priority"),
])
def test_invalid_bodies_are_422(client, auth_a, job_body, change, param) -> None:  # noqa: ANN001
    r = _submit(client, auth_a, {**job_body, **change})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert r.json()["error"]["param"].startswith(param), r.json()


def test_malformed_json_is_400(client, auth_a) -> None:  # noqa: ANN001
    r = client.post("/v1/jobs", headers={**auth_a, "Content-Type": "application/json"}, content=b'{"teacher_id": ')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post("/v1/jobs", headers={**auth_a, "Content-Type": "application/json"}, content=b"[1, 2]")
    assert r.status_code == 422


def test_labels_the_teacher_does_not_know(client, auth_a, job_body, upload_dataset) -> None:  # noqa: ANN001
    dataset = upload_dataset(auth_a, b"text,label\nhi,sports\nyo,weather\n", "odd.csv")
    r = _submit(client, auth_a, {**job_body, "train_dataset_id": dataset["id"]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_label"
    assert "sports" in r.json()["error"]["message"]
    # 60 rows: enough for the held-out test split a job without eval data cuts (fewer is a 422 now)
    indexed = upload_dataset(auth_a, b"text,label\n" + b"hi,0\nyo,1\n" * 30, "indexed.csv")
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": indexed["id"]}).status_code == 202


def test_ce_needs_labels(client, auth_a, job_body, upload_dataset) -> None:  # noqa: ANN001
    dataset = upload_dataset(auth_a, b"text\n" + b"hi\nyo\n" * 30, "transfer.csv", label_column="")
    r = _submit(client, auth_a, {**job_body, "train_dataset_id": dataset["id"], "method": "ce"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "labels_required"
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": dataset["id"]}).status_code == 202


def test_idempotency_replays_and_conflicts(client, auth_a, job_body, enqueued) -> None:  # noqa: ANN001
    first = _submit(client, auth_a, job_body, key="abc")
    again = _submit(client, auth_a, dict(reversed(list(job_body.items()))), key="abc")  # same body, other order
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = _submit(client, auth_a, {**job_body, "method": "kd"}, key="abc")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(enqueued) == 1


def test_idempotency_keys_are_per_tenant(client, auth_a, auth_b, job_body, upload_teacher, upload_dataset) -> None:  # noqa: ANN001, E501
    teacher, dataset = upload_teacher(auth_b), upload_dataset(auth_b)
    a = _submit(client, auth_a, job_body, key="shared")
    b = _submit(client, auth_b, {**job_body, "teacher_id": teacher["id"], "train_dataset_id": dataset["id"]},
                key="shared")
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_concurrent_posts_make_one_job_per_key(client, auth_a, job_body, enqueued, db) -> None:  # noqa: ANN001
    keys = [f"key-{i % 10}" for i in range(60)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda k: _submit(client, auth_a, job_body, key=k), keys))
    assert {r.status_code for r in responses} == {202}
    by_key: dict[str, set[str]] = {}
    for key, r in zip(keys, responses, strict=True):
        by_key.setdefault(key, set()).add(r.json()["id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    assert db.scalar(sa.select(sa.func.count()).select_from(Job)) == 10
    assert sorted(job_id for job_id, _ in enqueued) == sorted(next(iter(ids)) for ids in by_key.values())


def test_concurrent_posts_respect_the_job_limit(make_client, auth_a, job_body, db) -> None:  # noqa: ANN001
    client = make_client(max_concurrent_jobs_per_tenant=3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: _submit(client, auth_a, job_body), range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 3 + [429] * 9
    assert all(r.json()["error"]["code"] == "too_many_jobs" for r in responses if r.status_code == 429)
    assert db.scalar(sa.select(sa.func.count()).select_from(Job)) == 3


def test_429_clears_when_a_job_finishes(make_client, auth_a, job_body, db) -> None:  # noqa: ANN001
    client = make_client(max_concurrent_jobs_per_tenant=1)
    first = _submit(client, auth_a, job_body).json()
    assert _submit(client, auth_a, job_body).status_code == 429
    replay_key = _submit(client, auth_a, job_body, key="k")
    assert replay_key.status_code == 429
    assert client.post(f"/v1/jobs/{first['id']}/cancel", headers=auth_a).status_code == 202
    assert _submit(client, auth_a, job_body).status_code == 202


def test_list_pagination_and_status_filter(client, auth_a, job_body, db) -> None:  # noqa: ANN001
    ids = [_submit(client, auth_a, job_body).json()["id"] for _ in range(7)]
    job_states.finish(db, ids[1], "failed", error={"code": "x", "message": "y"})
    job_states.finish(db, ids[4], "failed", error={"code": "x", "message": "y"})
    db.commit()
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 3} | ({"after": after} if after else {})
        page = client.get("/v1/jobs", headers=auth_a, params=params).json()
        pages += 1
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    assert seen == list(reversed(ids)) and pages == 3
    failed = client.get("/v1/jobs", headers=auth_a, params={"status": "failed"}).json()
    assert [j["id"] for j in failed["data"]] == [ids[4], ids[1]]
    assert all(j["error"] == {"code": "x", "message": "y"} for j in failed["data"])
    queued = client.get("/v1/jobs", headers=auth_a, params={"status": "queued", "limit": 100}).json()
    assert len(queued["data"]) == 5 and not queued["has_more"]
    for bad in ({"status": "done"}, {"limit": 0}, {"limit": 1000}, {"after": "!!!"}):
        r = client.get("/v1/jobs", headers=auth_a, params=bad)
        assert r.status_code == 422, bad


def test_cancel(client, auth_a, job_body, db) -> None:  # noqa: ANN001
    from app.storage import StorePaths

    queued = _submit(client, auth_a, job_body).json()
    store = client.app.state.store  # a requeued job may have left checkpoints: a cancel drops them
    leftover = f"{StorePaths.checkpoint_delivery(queued['id'], 'claim')}/checkpoint.pt"
    with store.open(leftover, "wb") as fh:
        fh.write(b"x")
    r = client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth_a)
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert store.list_files(StorePaths.checkpoints(queued["id"])) == []
    assert client.post(f"/v1/jobs/{queued['id']}/cancel", headers=auth_a).status_code == 202  # idempotent

    running = _submit(client, auth_a, job_body).json()
    assert job_states.claim(db, running["id"], utcnow())
    db.commit()
    r = client.post(f"/v1/jobs/{running['id']}/cancel", headers=auth_a)
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["cancel_requested"]
    assert job_states.is_cancel_requested(db, running["id"])
    types = [e["type"] for e in client.get(f"/v1/jobs/{running['id']}/events", headers=auth_a).json()["data"]]
    assert types == ["created", "cancel_requested"]

    done = _submit(client, auth_a, job_body).json()
    job_states.finish(db, done["id"], "succeeded", metrics={"agreement": 1.0})
    db.commit()
    r = client.post(f"/v1/jobs/{done['id']}/cancel", headers=auth_a)
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"
    assert client.get(f"/v1/jobs/{done['id']}", headers=auth_a).json()["status"] == "succeeded"


def test_worker_state_functions(client, auth_a, job_body, db) -> None:  # noqa: ANN001
    """The repository calls the worker makes, seen through the API."""
    job_id = _submit(client, auth_a, job_body).json()["id"]
    assert job_states.claim(db, job_id, utcnow())
    job_states.record_progress(db, job_id, {"stage": "train", "epoch": 1, "step": 5, "total_steps": 10,
                                            "fraction": 0.5})
    repo.add_event(db, job_id, "stage", "training", {"epoch": 1})
    db.commit()
    job = client.get(f"/v1/jobs/{job_id}", headers=auth_a).json()
    assert job["status"] == "running" and job["attempts"] == 1 and job["started_at"]
    assert job["progress"]["fraction"] == 0.5
    assert job_states.finish(db, job_id, "succeeded", metrics={"agreement": 0.9})
    assert not job_states.finish(db, job_id, "failed", error={"code": "late", "message": "too late"})
    assert not job_states.claim(db, job_id, utcnow())
    db.commit()
    job = client.get(f"/v1/jobs/{job_id}", headers=auth_a).json()
    assert job["status"] == "succeeded" and job["metrics"] == {"agreement": 0.9} and job["finished_at"]
    events = client.get(f"/v1/jobs/{job_id}/events", headers=auth_a, params={"limit": 1}).json()
    assert events["has_more"] and len(events["data"]) == 1
    rest = client.get(f"/v1/jobs/{job_id}/events", headers=auth_a, params={"after": events["next_cursor"]}).json()
    # finish writes the final state's event in the same transaction
    assert [e["type"] for e in rest["data"]] == ["stage", "succeeded"] and rest["data"][0]["data"] == {"epoch": 1}


def test_real_broker_receives_the_job(make_client, auth_a, job_body, monkeypatch) -> None:  # noqa: ANN001
    """With the real Celery app (Redis db 15, no worker running) the job id lands on the cpu queue."""
    redis = pytest.importorskip("redis")
    celery_module = pytest.importorskip("app.queue")
    from tests.app.conftest import TEST_BROKER_URL

    client = make_client(real_broker=True)
    monkeypatch.setattr(celery_module, "celery_app", celery_module.make_celery(client.app.state.settings))
    conn = redis.Redis.from_url(TEST_BROKER_URL)
    try:
        conn.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not reachable")
    conn.delete("cpu", "gpu")
    try:
        r = _submit(client, auth_a, {**job_body, "device": "cpu"}, key="real")
        assert r.status_code == 202
        assert conn.llen("cpu") == 1
        assert r.json()["id"] in conn.lindex("cpu", 0).decode()
        assert _submit(client, auth_a, {**job_body, "device": "cpu"}, key="real").status_code == 202
        assert conn.llen("cpu") == 1  # a replay is not enqueued again
    finally:
        conn.delete("cpu", "gpu", *conn.keys("_kombu.*"))


def test_broker_down_keeps_the_job_queued(make_client, auth_a, job_body) -> None:  # noqa: ANN001
    client = make_client()

    def broken(job) -> None:  # noqa: ANN001
        raise ConnectionError("broker down")

    from app.deps import get_enqueuer

    client.app.dependency_overrides[get_enqueuer] = lambda: broken
    r = _submit(client, auth_a, job_body)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    types = [e["type"] for e in client.get(f"/v1/jobs/{r.json()['id']}/events", headers=auth_a).json()["data"]]
    assert types == ["created", "enqueue_failed"]
    db = client.app.state.sessionmaker()
    try:  # still owed its message: the recovery sweep sends it (app.services.recovery)
        assert db.get(Job, r.json()["id"]).enqueued_at is None
    finally:
        db.close()


def test_a_sent_job_is_marked_sent(client, auth_a, job_body, enqueued, db) -> None:  # noqa: ANN001
    """The outbox mark: set only once the enqueuer returned (a sender that dies before leaves it empty)."""
    r = _submit(client, auth_a, job_body)
    assert r.status_code == 202
    db.expire_all()
    assert db.get(Job, r.json()["id"]).enqueued_at is not None
