"""Killed workers and restarts (issue 5, items 1 and 2), against real processes.

Real Postgres (the session's throwaway database), a private ``redis-server`` as the broker,
real ``celery worker`` processes (prefork: a parent and its child in one process group)
and a real uvicorn API; the jobs are real distillations of the tiny BERT teacher into an
n-gram student, long enough (several epochs of 1000 rows and one teacher-scored variant of each)
to be killed mid-training. ``augment`` is set to 1, not the default "auto" (6 variants a row at this
size): one variant keeps the augment stage as a kill point at a third of the training time.

Recovery never relies on the broker: after a SIGKILL the Redis message stays unacknowledged
until the visibility timeout (the job time limit + 1 h), so the tests check that it is the
heartbeat sweep of a live worker that requeues the job, and that the next delivery resumes
from the last epoch checkpoint (a ``resumed`` job event with the epoch).

Each test records a line in the "reliability figures" section printed at the end of the
run; ``docs/RELIABILITY.md`` quotes them. About 3 minutes on 2 busy cores.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.worker_helpers import (
    HEARTBEAT_STALE_S,
    SWEEP_INTERVAL_S,
    PrivateRedis,
    Stack,
    in_stage,
    job_events,
    job_row,
    models_of,
    wait_for,
)
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.slow]

EPOCHS = 7
HYPERPARAMETERS = {"epochs": EPOCHS, "batch_size": 8, "seed": 0, "augment": 1}
# Sweep latency bound: stale window + one sweep interval + a busy machine's slack.
REQUEUE_WITHIN_S = HEARTBEAT_STALE_S + SWEEP_INTERVAL_S + 12


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path_factory.mktemp("redis")).start()
    yield redis
    redis.kill()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pg_url, broker, tiny_teacher_dir) -> Iterator[dict[str, Any]]:
    """One API process, a tenant key, the tiny teacher and a 1000-row dataset; workers per test."""
    from app.client.http import LelpClient
    from app.db.session import session_scope
    from app.security import create_api_key

    root = tmp_path_factory.mktemp("kills")
    # A worker killed between its sweep's commit and its send leaves a job owed its message: the
    # outbox re-send (enqueue_grace_s + sweep_interval_s, issue 20) covers it; queued_stale_s=30
    # stays as the fallback it was before that.
    stack = Stack.create(root, database_url=pg_url, broker_url=broker.url, job_max_attempts=6, queued_stale_s=30,
                         enqueue_grace_s=3)
    try:
        api = stack.start_api()
        with session_scope(pg_url) as session:
            key = create_api_key(session, "worker-kills")
        with LelpClient(api.url, key, timeout=60) as client:
            teacher = client.upload_teacher(tiny_teacher_dir)
            train = client.upload_dataset(write_csv(root / "train.csv", make_text_rows(1000, seed=11)))
            yield {"stack": stack, "client": client, "teacher": teacher["id"], "train": train["id"],
                   "db": pg_url, "broker": broker}
    finally:
        stack.stop()


def submit(deployment: dict[str, Any], **hyperparameters: Any) -> str:
    job = deployment["client"].create_job(deployment["teacher"], deployment["train"], method="kd",
                                          student="ngram", device="cpu",
                                          hyperparameters={**HYPERPARAMETERS, **hyperparameters})
    return job["id"]


def unacked_job_ids(redis_client) -> list[str]:  # noqa: ANN001
    """Job ids of the messages Redis holds as delivered-but-unacknowledged (kombu's ``unacked`` hash)."""
    ids = []
    for raw in redis_client.hvals("unacked"):
        message = json.loads(raw)[0]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        args = json.loads(body)[0]
        ids.extend(str(a) for a in args)
    return ids


def leftover_checkpoints(store: Path) -> list[Path]:
    root = store / "checkpoints"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def attempts_of(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The job's events split per delivery (each starts with a ``started`` event)."""
    attempts: list[list[dict[str, Any]]] = []
    for event in events:
        if event["type"] == "started":
            attempts.append([])
        if attempts:
            attempts[-1].append(event)
    return attempts


def resumed_epoch(attempt_events: list[dict[str, Any]]) -> int:
    epochs = [e["data"]["epoch"] for e in attempt_events if e["type"] == "resumed"]
    return max(epochs, default=0)


def running_job(db: str, job_ids: list[str], killed_attempts: dict[str, int], stages: tuple[str, ...],
                min_epoch: int) -> str | None:
    """The job a live worker is running in one of ``stages`` (a killed delivery's stale row does not count)."""
    for job_id in job_ids:
        for stage in stages:
            try:
                if in_stage(db, job_id, stage, min_epoch, after_attempt=killed_attempts.get(job_id, 0))():
                    return job_id
            except AssertionError:  # it ended: another job of the list may still reach the stage
                break
    return None


# --- 1. killed at several stages, resumed from the checkpoint -------------------------------------


@pytest.mark.timeout(300)
def test_sigkilled_workers_resume_every_job_from_its_last_checkpoint(deployment, figures):
    """Four SIGKILLs of the whole worker (prefork parent and child) at different stages."""
    stack, db = deployment["stack"], deployment["db"]
    jobs = [submit(deployment), submit(deployment)]
    # Before training: scoring the rows (extract) or the teacher's variants of them (augment), a fraction
    # of a second each on idle cores with the tiny teacher; the 50 ms poll may miss one, not both.
    before_training = ("extract", "augment")
    plan = [(before_training, 0), (("train",), 3), (("train",), 2), (("train",), 5)]
    kills: list[dict[str, Any]] = []
    killed_attempts: dict[str, int] = {}
    try:
        worker = stack.start_worker("kill-0")
        for n, (stages, min_epoch) in enumerate(plan, start=1):
            job_id = wait_for(partial(running_job, db, jobs, killed_attempts, stages, min_epoch), 150,
                              lambda: f"a job in a stage of the plan\n{stack.logs()}", poll_s=0.05)
            row = job_row(db, job_id)
            stage = row["progress"].get("stage") if row["progress"].get("stage") in stages else stages[0]
            worker.kill()  # SIGKILL to the process group: the prefork parent and its child
            killed_attempts[job_id] = row["attempts"]
            kills.append({"job": job_id, "stage": stage, "epoch": row["progress"].get("epoch") or 0,
                          "attempt": row["attempts"]})
            worker = stack.start_worker(f"kill-{n}")
        finals = {job_id: deployment["client"].wait_job(job_id, poll=0.5, timeout=200) for job_id in jobs}
    finally:
        stack.stop_workers()

    for job_id, job in finals.items():
        assert job["status"] == "succeeded", f"{job}\n{stack.logs()}"
        killed = [k for k in kills if k["job"] == job_id]
        assert job["attempts"] == len(killed) + 1, (job, killed)

    resumed_at: list[int] = []
    for kill in kills:
        events = job_events(db, kill["job"])
        assert "requeued" in [e["type"] for e in events], events
        next_attempt = attempts_of(events)[kill["attempt"]]  # the delivery after the killed one
        resumed = resumed_epoch(next_attempt)
        if kill["stage"] == "train":
            # progress reported epoch e: epochs < e were checkpointed to the store before it began.
            assert resumed >= max(1, kill["epoch"] - 1), (kill, next_attempt)
            assert resumed <= EPOCHS
        else:
            assert resumed == 0, (kill, next_attempt)  # nothing was checkpointed before training
        kill["resumed"] = resumed
        resumed_at.append(resumed)
    succeeded = [e for j in jobs for e in job_events(db, j) if e["type"] == "succeeded"]
    assert len(succeeded) == len(jobs)
    assert sum(1 for r in resumed_at if r > 0) >= 3

    models = models_of(db, jobs)
    assert sorted(m["job_id"] for m in models) == sorted(jobs)  # one model per job, no duplicate
    assert leftover_checkpoints(stack.artifacts) == []  # removed once each job's model was published

    # Open finding (see docs/RELIABILITY.md): the kill during extraction leaves the partial
    # feature arrays in the shared cache; counted here, not asserted, until the cache cleans them.
    partial_caches = list((stack.artifacts / "cache" / "features").glob(".tmp-*"))
    story = ", ".join(
        f"{'job ' + str(jobs.index(k['job']) + 1)} attempt {k['attempt']} in "
        + (f"training epoch {k['epoch']} -> resumed at epoch {k['resumed']}" if k["stage"] == "train"
           else f"{k['stage']} -> started over (no checkpoint yet)")
        for k in kills)
    figures(f"jobs {len(jobs)} / kills {len(kills)}: {story} / survived {len(finals)} of {len(jobs)} / "
            f"attempts {[finals[j]['attempts'] for j in jobs]} / models {len(models)} / "
            f"partial feature-cache dirs left {len(partial_caches)}")


# --- 2. found by the heartbeat sweep, not by broker redelivery -------------------------------------


@pytest.mark.timeout(240)
def test_orphaned_job_is_requeued_by_the_heartbeat_sweep(deployment, figures):
    """The broker never hands the message back; a second, live worker's sweep finds the job."""
    stack, db, broker = deployment["stack"], deployment["db"], deployment["broker"]
    try:
        doomed = stack.start_worker("doomed")
        job_id = submit(deployment)
        # Once the job is claimed, the doomed worker holds its only message: the survivor,
        # started now, can get the job back only through the sweep.
        wait_for(lambda: job_row(db, job_id)["status"] == "running", 60, lambda: f"the job claimed\n{stack.logs()}")
        survivor = stack.start_worker("survivor")
        wait_for(in_stage(db, job_id, "train", 2), 120, lambda: f"training epoch 2\n{stack.logs()}", poll_s=0.05)
        killed_epoch = job_row(db, job_id)["progress"]["epoch"]
        doomed.kill()
        killed_at = time.monotonic()

        def requeued() -> bool:
            return any(e["type"] == "requeued" for e in job_events(db, job_id))

        wait_for(requeued, REQUEUE_WITHIN_S + 10, "the sweep to requeue the job")
        requeue_s = time.monotonic() - killed_at
        # The broker did not redeliver: the killed delivery is still unacknowledged in Redis.
        with broker.client() as redis_client:
            assert job_id in unacked_job_ids(redis_client)
        job = deployment["client"].wait_job(job_id, poll=0.5, timeout=120)
    finally:
        stack.stop_workers()
    assert job["status"] == "succeeded", f"{job}\n{survivor.log_tail()}"
    assert job["attempts"] == 2
    resumed = resumed_epoch(attempts_of(job_events(db, job_id))[1])
    assert max(1, killed_epoch - 1) <= resumed <= EPOCHS
    assert requeue_s <= REQUEUE_WITHIN_S, requeue_s
    running = deployment["client"].list_jobs(status="running")["data"]
    assert running == [], running  # none stays running
    figures(f"killed at epoch {killed_epoch} / requeued by the sweep after {requeue_s:.1f} s "
            f"(stale window {HEARTBEAT_STALE_S} s, sweep every {SWEEP_INTERVAL_S} s) / broker redeliveries 0 / "
            f"resumed at epoch {resumed} / attempts 2 / left running 0")


# --- 3. a job that keeps killing its worker ends failed ---------------------------------------------


@pytest.mark.timeout(240)
def test_job_that_keeps_killing_its_worker_fails_after_max_attempts(deployment, figures):
    stack, db = deployment["stack"], deployment["db"]
    max_attempts = 2
    job_id = submit(deployment)
    kills = 0
    try:
        worker = stack.start_worker("crashy-0", job_max_attempts=max_attempts)
        for attempt in range(1, max_attempts + 1):
            wait_for(in_stage(db, job_id, "train", after_attempt=attempt - 1), 120,
                     lambda: f"a training delivery\n{stack.logs()}", poll_s=0.05)
            worker.kill()  # as an out-of-memory kill of this job would
            kills += 1
            worker = stack.start_worker(f"crashy-{attempt}", job_max_attempts=max_attempts)
        job = deployment["client"].wait_job(job_id, poll=0.5, timeout=120)
    finally:
        stack.stop_workers()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "too_many_attempts", job
    assert f"limit {max_attempts}" in job["error"]["message"], job
    assert job["attempts"] == max_attempts + 1  # the refused delivery counts too
    assert job["model_id"] is None
    figures(f"kills {kills} / job_max_attempts {max_attempts} / final status failed, "
            f"error too_many_attempts (\"{job['error']['message']}\") / attempts {job['attempts']}")


# --- 4. restarting the API and the broker loses nothing, duplicates nothing ------------------------


@pytest.mark.timeout(300)
def test_api_and_broker_restarts_lose_no_job_and_duplicate_no_artifact(tmp_path, pg_url, tiny_teacher_dir, figures):
    from app.client.http import ApiError, LelpClient
    from app.db.session import session_scope
    from app.security import create_api_key

    redis = PrivateRedis(tmp_path).start()
    # A message lost with the broker is sent again once its queued job is this old.
    stack = Stack.create(tmp_path / "restarts", database_url=pg_url, broker_url=redis.url, queued_stale_s=4)
    try:
        api = stack.start_api()
        stack.start_worker("restarts")
        with session_scope(pg_url) as session:
            key = create_api_key(session, "restarts")
        client = LelpClient(api.url, key, timeout=60)
        teacher = client.upload_teacher(tiny_teacher_dir)["id"]
        train = client.upload_dataset(write_csv(tmp_path / "train.csv", make_text_rows(400, seed=12)))["id"]

        def submit_one() -> str:
            return client.create_job(teacher, train, method="kd", student="ngram", device="cpu",
                                     hyperparameters={"epochs": 3, "batch_size": 8, "seed": 0, "augment": 1})["id"]

        jobs = [submit_one() for _ in range(3)]
        wait_for(lambda: job_row(pg_url, jobs[0])["status"] == "running", 90, lambda: f"job 1 running\n{stack.logs()}")

        api.restart()  # SIGKILL, then a new API process on the same port
        jobs.append(submit_one())
        listed = {j["id"] for j in client.list_jobs(limit=100)["data"]}
        assert set(jobs) <= listed

        def any_running() -> bool:
            return any(job_row(pg_url, j)["status"] == "running" for j in jobs)

        wait_for(any_running, 90, "a running job")
        with redis.client() as redis_client:
            queued_messages = redis_client.llen("cpu")
        redis.kill()  # every queued message is lost (no persistence)
        jobs.append(submit_one())  # accepted while the broker is down: the sweep sends it later
        redis.start()
        jobs.append(submit_one())

        finals = {}
        for job_id in jobs:
            try:
                finals[job_id] = client.wait_job(job_id, poll=0.5, timeout=200)
            except ApiError as exc:
                pytest.fail(f"{exc}\n{stack.logs()}")
        client.close()
    finally:
        stack.stop()
        redis.kill()

    lost = [j for j, job in finals.items() if job["status"] != "succeeded"]
    assert lost == [], (finals, stack.logs())
    assert [job["attempts"] for job in finals.values()] == [1] * len(jobs)  # no job ran twice
    events = {j: [e["type"] for e in job_events(pg_url, j)] for j in jobs}
    assert "enqueue_failed" in events[jobs[4]], events[jobs[4]]  # the broker was down for that one

    models = models_of(pg_url, jobs)
    assert sorted(m["job_id"] for m in models) == sorted(jobs)  # exactly one model row per job
    assert {finals[m["job_id"]]["model_id"] for m in models} == {m["id"] for m in models}
    store = stack.artifacts
    model_dirs = sorted(p.name for p in (store / "models").iterdir())
    assert model_dirs == sorted(m["id"] for m in models)  # one dir per model, no orphan
    # each model lives under the claim of the delivery that published it: models/{model}/{claim}
    assert [m["uri"].rsplit("/", 1)[0] for m in models] == [f"models/{m['id']}" for m in models]
    assert all(len(list((store / "models" / m["id"]).iterdir())) == 1 for m in models)  # one claim dir each
    assert leftover_checkpoints(store) == []
    figures(f"jobs {len(jobs)} (3 before the API restart, 1 after it, 1 while the broker was down, 1 after) / "
            f"API restarts 1 / broker restarts 1 ({queued_messages} queued messages lost with it) / "
            f"succeeded {len(jobs) - len(lost)} / lost 0 / ran twice 0 / model rows {len(models)} / "
            f"model dirs {len(model_dirs)} / orphan dirs 0")
