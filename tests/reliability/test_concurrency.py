"""Concurrency: 220 simultaneous job submissions over real HTTP, and cancel racing a finish.

Runs against a uvicorn server on a free port and the real Postgres test database; the
broker is a counting enqueuer, so "enqueued twice" is measured exactly.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from app.db import job_states
from app.db.base import utcnow
from app.db.models import Job, JobEvent, Model
from app.db.session import make_sessionmaker
from tests.reliability.conftest import publish_model

UNIQUE, SHARED, CONFLICTING = 100, 50, 20  # 100 keys used once, 50 used twice, 20 of those also with another body


async def _post_all(url: str, headers: dict, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        start = asyncio.Event()

        async def one(key: str, body: dict) -> httpx.Response:
            await start.wait()
            return await http.post("/v1/jobs", headers={**headers, "Idempotency-Key": key}, json=body)

        tasks = [asyncio.create_task(one(key, body)) for key, body in requests]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


async def _get_all(url: str, headers: dict, paths: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as http:
        return await asyncio.gather(*(http.get(path) for path in paths))


@pytest.mark.slow
def test_220_concurrent_submissions(live_server, auth_a, teacher_tar_gz, train_csv_bytes, db, figures) -> None:
    server, enqueuer = live_server(max_concurrent_jobs_per_tenant=1000)
    with httpx.Client(base_url=server.url, headers=auth_a, timeout=60) as http:
        teacher = http.post("/v1/teachers", files={"file": ("t.tar.gz", teacher_tar_gz)}).json()
        dataset = http.post("/v1/datasets", files={"file": ("train.csv", train_csv_bytes)}).json()

    def body(seed: int) -> dict:
        return {"teacher_id": teacher["id"], "train_dataset_id": dataset["id"], "method": "kd",
                "hyperparameters": {"epochs": 1, "seed": seed}}

    requests = [(f"unique-{i}", body(i)) for i in range(UNIQUE)]
    requests += [(f"shared-{i}", body(1000 + i)) for i in range(SHARED) for _ in range(2)]
    requests += [(f"shared-{i}", body(5000 + i)) for i in range(CONFLICTING)]  # same key, another body
    responses = asyncio.run(_post_all(server.url, auth_a, requests))

    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, {r.status_code: r.text for r in responses if r.status_code not in (202, 409)}
    by_key: dict[str, list[tuple[dict, httpx.Response]]] = defaultdict(list)
    for (key, sent), response in zip(requests, responses, strict=True):
        by_key[key].append((sent, response))
    for key, pairs in by_key.items():
        accepted = [(sent, r) for sent, r in pairs if r.status_code == 202]
        refused = [(sent, r) for sent, r in pairs if r.status_code == 409]
        assert accepted, key
        winner = accepted[0][0]
        # every accepted request carried the winning body and got the very same job back
        assert all(sent == winner for sent, _ in accepted), key
        assert len({r.json()["id"] for _, r in accepted}) == 1, key
        assert all(r.json() == accepted[0][1].json() for _, r in accepted), key
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for _, r in accepted) == len(accepted) - 1, key
        # every refused request carried another body, with the documented error
        assert all(sent != winner for sent, _ in refused), key
        assert all(r.json()["error"]["code"] == "idempotency_key_reused" for _, r in refused), key

    job_ids = {r.json()["id"] for r in responses if r.status_code == 202}
    db.expire_all()
    stored = {job.id: job for job in db.scalars(sa.select(Job))}
    assert set(stored) == job_ids and len(job_ids) == UNIQUE + SHARED
    assert all(stored[i].status == "queued" and stored[i].idempotency_key for i in job_ids)
    created_events = Counter(db.scalars(sa.select(JobEvent.job_id).where(JobEvent.type == "created")))
    assert set(created_events.values()) == {1} and set(created_events) == job_ids
    assert set(enqueuer.calls) == job_ids
    twice = sum(1 for n in enqueuer.calls.values() if n > 1)
    assert twice == 0
    # a burst of reads right after: every one answered (the pool must not starve under load)
    reads = asyncio.run(_get_all(server.url, auth_a, ["/v1/jobs?limit=100", *(f"/v1/jobs/{i}" for i in job_ids)]
                                 + ["/v1/jobs?limit=100"] * 49))
    assert [r.status_code for r in reads] == [200] * 200
    figures(f"jobs posted {len(requests)} / jobs created {len(job_ids)} (expected {UNIQUE + SHARED}) / "
            f"409 {statuses[409]} / enqueued twice {twice} / 5xx {sum(n for s, n in statuses.items() if s >= 500)}")


def test_job_limit_under_concurrency_over_http(live_server, auth_a, teacher_tar_gz, train_csv_bytes, db,
                                               figures) -> None:
    server, enqueuer = live_server(max_concurrent_jobs_per_tenant=5)
    with httpx.Client(base_url=server.url, headers=auth_a, timeout=60) as http:
        teacher = http.post("/v1/teachers", files={"file": ("t.tar.gz", teacher_tar_gz)}).json()
        dataset = http.post("/v1/datasets", files={"file": ("train.csv", train_csv_bytes)}).json()
    body = {"teacher_id": teacher["id"], "train_dataset_id": dataset["id"]}
    responses = asyncio.run(_post_all(server.url, auth_a, [(f"k{i}", body) for i in range(40)]))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {202: 5, 429: 35}
    assert all(r.json()["error"]["code"] == "too_many_jobs" for r in responses if r.status_code == 429)
    db.expire_all()
    assert db.scalar(sa.select(sa.func.count()).select_from(Job)) == 5 == len(enqueuer.calls)
    figures(f"jobs posted 40 / limit 5 / created {statuses[202]} / 429 {statuses[429]}")


def test_cancel_racing_finish_leaves_one_final_state(client, auth_a, db, engine, student_dir, teacher_tar_gz,
                                                     train_csv_bytes, figures) -> None:
    """A cancel request and the worker's "succeeded" commit race, 40 times (queued and running jobs)."""
    teacher = client.post("/v1/teachers", headers=auth_a, files={"file": ("t.tar.gz", teacher_tar_gz)}).json()
    dataset = client.post("/v1/datasets", headers=auth_a, files={"file": ("train.csv", train_csv_bytes)}).json()
    body = {"teacher_id": teacher["id"], "train_dataset_id": dataset["id"]}
    rounds = 40
    job_ids = [client.post("/v1/jobs", headers=auth_a, json=body).json()["id"] for _ in range(rounds)]
    tenant_id = db.get(Job, job_ids[0]).tenant_id
    for job_id in job_ids[::2]:
        assert job_states.claim(db, job_id, utcnow())  # half are running when the race starts
    db.commit()
    Session = make_sessionmaker(engine)
    store = client.app.state.store
    outcomes: Counter[str] = Counter()
    jitter = random.Random(0)

    def finish(job_id: str, barrier: threading.Barrier) -> bool:
        with Session() as session:
            barrier.wait()
            time.sleep(jitter.uniform(0, 0.02))  # the HTTP side has a longer path: give both a chance
            return publish_model(session, store, tenant_id=tenant_id, job_id=job_id, teacher_id=teacher["id"],
                                 artifact=student_dir, labels=["negative", "positive"]) is not None

    def cancel(job_id: str, barrier: threading.Barrier):
        barrier.wait()
        return client.post(f"/v1/jobs/{job_id}/cancel", headers=auth_a)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for job_id in job_ids:
            barrier = threading.Barrier(2)
            finished = pool.submit(finish, job_id, barrier)
            cancelled = pool.submit(cancel, job_id, barrier)
            won, response = finished.result(timeout=60), cancelled.result(timeout=60)
            assert response.status_code in (202, 409), response.text
            db.expire_all()
            job = db.get(Job, job_id)
            models = db.scalars(sa.select(Model).where(Model.job_id == job_id)).all()
            assert job.status in ("succeeded", "cancelled") and job.finished_at is not None
            if job.status == "succeeded":
                assert won and job.model_id and [m.id for m in models] == [job.model_id]
                assert response.status_code == 409 or response.json()["status"] == "running"
                assert store.list_files(f"models/{job.model_id}")
            else:
                assert not won and job.model_id is None and models == []
                assert response.status_code == 202 and response.json()["status"] == "cancelled"
                assert job.error["code"] == "cancelled"
            final_types = [t for t in db.scalars(sa.select(JobEvent.type).where(JobEvent.job_id == job_id))
                           if t in ("succeeded", "cancelled")]
            assert len(final_types) <= 1
            outcomes[f"{'running' if job_ids.index(job_id) % 2 == 0 else 'queued'}->{job.status}"] += 1
            # finished_at is set once: later finishes and cancels change nothing
            first_finished_at = job.finished_at
            assert not job_states.finish(db, job_id, "failed", error={"code": "late", "message": "late"})
            db.commit()
            again = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth_a)
            assert again.status_code == (409 if job.status == "succeeded" else 202)
            db.expire_all()
            assert db.get(Job, job_id).finished_at == first_finished_at
            assert db.get(Job, job_id).status == job.status
    # every model directory in the store belongs to a succeeded job: a lost race leaves no files
    stored_models = {path.split("/")[0] for path in store.list_files("models")}
    assert stored_models == set(db.scalars(sa.select(Job.model_id).where(Job.model_id.is_not(None))))
    figures(f"races {rounds} / outcomes {dict(sorted(outcomes.items()))} / inconsistent 0")
