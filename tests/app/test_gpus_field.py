"""``hyperparameters.gpus``: DDP over several GPUs, refused at submit where it cannot run."""

from __future__ import annotations

import pytest


def _refused(r, code: str, param: str) -> dict:  # noqa: ANN001
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    return error


def test_several_gpus_only_for_the_transformer_student_and_not_on_the_cpu(client, auth_a, job_body, enqueued,
                                                                         db) -> None:  # noqa: ANN001
    from app.db import repositories as repo

    repo.beat_worker(db, "gpu0-1@host", ["gpu"], ["cpu", "cuda:0", "cuda:1"])
    db.commit()
    hp = {**job_body["hyperparameters"], "gpus": 2}
    error = _refused(client.post("/v1/jobs", headers=auth_a, json={**job_body, "hyperparameters": hp}),
                     "multi_gpu_unsupported", "hyperparameters.gpus")
    assert "transformer" in error["message"]
    transformer = {**job_body, "student": {"kind": "transformer"}, "method": "kd", "hyperparameters": hp}
    error = _refused(client.post("/v1/jobs", headers=auth_a, json={**transformer, "device": "cpu"}),
                     "multi_gpu_unsupported", "hyperparameters.gpus")
    assert "device" in error["message"]
    assert enqueued == []
    r = client.post("/v1/jobs", headers=auth_a, json=transformer)
    assert r.status_code == 202, r.text
    assert r.json()["hyperparameters"]["gpus"] == 2
    one = {**job_body, "hyperparameters": {**job_body["hyperparameters"], "gpus": 1}}
    assert client.post("/v1/jobs", headers=auth_a, json=one).status_code == 202  # 1 is any student's


def test_gpus_are_judged_against_the_live_gpu_workers(client, auth_a, job_body, enqueued, db) -> None:  # noqa: ANN001
    """Issue 18: ``gpus: 64`` with ``device: auto`` and no GPU worker was queued on the CPU worker,
    which started 64 gloo processes."""
    from app.db import repositories as repo

    body = {**job_body, "student": {"kind": "transformer"}, "method": "kd", "device": "auto",
            "hyperparameters": {**job_body["hyperparameters"], "gpus": 64}}
    error = _refused(client.post("/v1/jobs", headers=auth_a, json=body), "not_enough_gpus", "hyperparameters.gpus")
    assert "no GPU worker" in error["message"]
    repo.beat_worker(db, "embedded@host", ["cpu", "gpu"], ["cpu"])  # consumes gpu, sees none
    repo.beat_worker(db, "gpu0@host", ["gpu"], ["cpu", "cuda:0"])
    repo.beat_worker(db, "cuda-cpu@host", ["cpu"], ["cpu", "cuda:0", "cuda:1"])  # not a gpu-queue worker
    db.commit()
    two = {**body, "hyperparameters": {**body["hyperparameters"], "gpus": 2}}
    error = _refused(client.post("/v1/jobs", headers=auth_a, json=two), "not_enough_gpus", "hyperparameters.gpus")
    assert "sees 1" in error["message"]
    assert enqueued == []
    repo.beat_worker(db, "gpu1-2@host", ["gpu"], ["cpu", "cuda:0", "cuda:1"])
    db.commit()
    r = client.post("/v1/jobs", headers=auth_a, json=two)
    assert r.status_code == 202, r.text
    _refused(client.post("/v1/jobs", headers=auth_a, json={**body, "hyperparameters": {
        **body["hyperparameters"], "gpus": 3}}), "not_enough_gpus", "hyperparameters.gpus")


def test_ddp_launch_never_starts_more_cpu_ranks_than_allowed(monkeypatch) -> None:  # noqa: ANN001
    from types import SimpleNamespace

    from lelp.devices.ddp_launch import check_devices
    from lelp.errors import ConfigError

    monkeypatch.setenv("LELP_MAX_CPU_RANKS", "2")
    check_devices(SimpleNamespace(device="cpu", gpus=2))  # CI's gloo test
    with pytest.raises(ConfigError, match="asks for 64 processes"):
        check_devices(SimpleNamespace(device="cpu", gpus=64))


@pytest.mark.parametrize("gpus", [0, 65, "two", 1.5])
def test_gpus_out_of_range_is_a_422(client, auth_a, job_body, gpus) -> None:  # noqa: ANN001
    body = {**job_body, "hyperparameters": {**job_body["hyperparameters"], "gpus": gpus}}
    r = client.post("/v1/jobs", headers=auth_a, json=body)
    assert r.status_code == 422 and r.json()["error"]["param"] == "hyperparameters.gpus", r.text


def test_the_worker_passes_gpus_to_the_library(tmp_path) -> None:  # noqa: ANN001
    from worker.runner import JobInputs, build_config

    inputs = JobInputs(job_id="j", tenant_id="t", attempts=1, method="kd", student={"kind": "transformer"},
                       device="gpu", hyperparameters={"gpus": 2, "epochs": 1}, teacher_id="tc", teacher_uri="x",
                       labels=["a", "b"], train_uri="y", train_format="csv", eval_uri=None, eval_format=None,
                       text_column="text", text_pair_column=None, label_column="label")
    config = build_config(inputs, tmp_path / "teacher", tmp_path / "train.csv", None)
    assert (config.gpus, config.student, config.epochs) == (2, "transformer", 1)
