"""``hyperparameters.gpus``: DDP over several GPUs, refused at submit where it cannot run."""

from __future__ import annotations

import pytest


def _refused(r, code: str, param: str) -> dict:  # noqa: ANN001
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    return error


def test_several_gpus_only_for_the_transformer_student_and_not_on_the_cpu(client, auth_a, job_body,
                                                                         enqueued) -> None:  # noqa: ANN001
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
