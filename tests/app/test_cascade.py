"""Cascade serving over HTTP (issue 22): threshold from the job's validation curve, the teacher in its own
process, ``served_by``, /metrics, kept traffic (bounded, tenant-scoped), redistil's job."""

from __future__ import annotations

import pytest

# A validation curve like a job writes: the student alone 80%, the teacher 90%.
VALIDATION = {"rows": 100, "teacher_accuracy": 0.9, "student_accuracy": 0.8, "points": [
    {"deferred_fraction": 0.0, "accuracy": 0.80, "threshold": 0.0},
    {"deferred_fraction": 0.2, "accuracy": 0.87, "threshold": 0.6},
    {"deferred_fraction": 0.5, "accuracy": 0.895, "threshold": 0.8},
    {"deferred_fraction": 1.0, "accuracy": 0.90, "threshold": 1.000001}]}


@pytest.fixture
def cascade_model(make_model, auth_a, job_body, db):  # noqa: ANN001, ANN201
    """A model (files: the tiny teacher) whose metrics carry a validation curve; its teacher is the same model."""
    from app.db.models import Model

    model = make_model(auth_a, job_body)
    row = db.get(Model, model["id"])
    row.metrics = {**row.metrics, "cascade": {"validation": VALIDATION, "curve": [
        {"deferred_fraction": p["deferred_fraction"], "accuracy": p["accuracy"], "speedup": None,
         "threshold": p["threshold"]} for p in VALIDATION["points"]]}}
    db.commit()
    return model


def test_threshold_is_chosen_on_validation_for_the_target(client, auth_a, cascade_model) -> None:  # noqa: ANN001
    url = f"/v1/models/{cascade_model['id']}/cascade"
    r = client.post(url, headers=auth_a, json={"target_accuracy": 0.99})
    assert r.status_code == 200, r.text
    cascade = r.json()["cascade"]
    assert cascade["threshold"] == 0.8 and cascade["validation"]["deferred_fraction"] == 0.5
    assert cascade["validation"]["teacher_fraction"] == pytest.approx(0.895 / 0.9)
    r = client.post(url, headers=auth_a, json={"max_deferred_fraction": 0.3})
    assert r.json()["cascade"]["threshold"] == 0.6
    assert client.get(f"/v1/models/{cascade_model['id']}", headers=auth_a).json()["cascade"]["threshold"] == 0.6
    r = client.delete(url, headers=auth_a)
    assert r.status_code == 200 and r.json()["cascade"] is None


@pytest.mark.parametrize("body", [{}, {"target_accuracy": 0.9, "max_deferred_fraction": 0.1},
                                  {"target_accuracy": 1.5}, {"max_deferred_fraction": -0.1},
                                  {"target_accuracy": 0.9, "max_kept_rows": 0}, {"target_accuracy": 0.9, "x": 1}])
def test_bad_cascade_requests_are_422(client, auth_a, cascade_model, body) -> None:  # noqa: ANN001
    r = client.post(f"/v1/models/{cascade_model['id']}/cascade", headers=auth_a, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_a_model_without_a_curve_and_other_tenants(client, auth_a, auth_b, make_model, job_body,  # noqa: ANN001
                                                   cascade_model) -> None:
    plain = make_model(auth_a, job_body)  # metrics without a cascade section: an older model
    r = client.post(f"/v1/models/{plain['id']}/cascade", headers=auth_a, json={"target_accuracy": 0.99})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_cascade_curve"
    for method, path in (("post", "cascade"), ("delete", "cascade"), ("get", "traffic"), ("post", "redistil")):
        kwargs = {"json": {"target_accuracy": 0.99}} if path == "cascade" and method == "post" else {}
        r = getattr(client, method)(f"/v1/models/{cascade_model['id']}/{path}", headers=auth_b, **kwargs)
        assert r.status_code == 404, (method, path)
    r = client.post(f"/v1/models/{cascade_model['id']}/redistil", headers=auth_a)
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_traffic"


def test_cascade_predict_defers_to_the_teacher_process_and_keeps_traffic(client, auth_a, cascade_model,  # noqa: ANN001
                                                                          enqueued) -> None:
    model_id = cascade_model["id"]
    texts = ["a good movie", "an awful plot", "the film", "nice", "bad bad", "so so"]
    plain = client.post(f"/v1/models/{model_id}/predict", headers=auth_a, json={"inputs": texts}).json()
    assert all("served_by" not in p for p in plain["predictions"])
    # everything to the teacher (target 100%), at most 4 rows kept
    r = client.post(f"/v1/models/{model_id}/cascade", headers=auth_a,
                    json={"target_accuracy": 1.0, "keep_traffic": True, "max_kept_rows": 4})
    assert r.status_code == 200, r.text
    body = client.post(f"/v1/models/{model_id}/predict", headers=auth_a, json={"inputs": texts}).json()
    assert [p["served_by"] for p in body["predictions"]] == ["teacher"] * len(texts)
    for got, want in zip(body["predictions"], plain["predictions"], strict=True):  # the teacher is the same model
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-4)
    pids = client.app.state.inference.teacher_pids()
    assert len(pids) == 1 and all(pid is not None for pid in pids.values())  # a process of its own
    assert client.get(f"/v1/models/{model_id}/traffic", headers=auth_a).json() == {
        "kept_rows": 4, "max_kept_rows": 4, "keep_traffic": True}
    metrics = client.get("/metrics").text
    assert 'lelp_cascade_rows_total{served_by="teacher"} 6.0' in metrics
    assert "lelp_cascade_deferral_ratio 1.0" in metrics
    assert "lelp_cascade_teacher_batch_seconds_count 1.0" in metrics
    # a threshold of 0: the student answers everything
    client.post(f"/v1/models/{model_id}/cascade", headers=auth_a, json={"max_deferred_fraction": 0.0})
    body = client.post(f"/v1/models/{model_id}/predict", headers=auth_a, json={"inputs": texts}).json()
    assert [p["served_by"] for p in body["predictions"]] == ["student"] * len(texts)
    # redistil: a new dataset (training rows + the 4 kept) and a queued job with the reference
    r = client.post(f"/v1/models/{model_id}/redistil", headers=auth_a)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}" and job["id"] in [j for j, _device in enqueued]
    reference = job["hyperparameters"]["cascade_reference"]
    assert reference["from_model_id"] == model_id and reference["kept_rows"] == 4
    dataset = client.get(f"/v1/datasets/{job['train_dataset_id']}", headers=auth_a).json()
    parent_train = client.get(f"/v1/jobs/{cascade_model['job_id']}", headers=auth_a).json()["train_dataset_id"]
    assert dataset["rows"] == client.get(f"/v1/datasets/{parent_train}", headers=auth_a).json()["rows"] + 4


def test_teacher_process_answers_like_the_teacher_and_restarts(tiny_teacher_dir, tmp_path) -> None:  # noqa: ANN001
    import numpy as np

    from app.services.teacher_process import TeacherProcess, TeacherUnavailable
    from lelp.artifacts import load_predictor

    broken = TeacherProcess(tmp_path / "nothing-here")
    with pytest.raises(TeacherUnavailable):
        broken.start()
    batches: list[tuple[int, float]] = []
    process = TeacherProcess(tiny_teacher_dir, max_length=32, on_batch=lambda rows, s: batches.append((rows, s)))
    texts = ["a good film", "a bad plot", "nothing"]
    try:
        probs = process.predict_proba(texts)
        assert process.labels == ["negative", "positive"] and batches[0][0] == 3
        want = load_predictor(tiny_teacher_dir).predict_proba(texts)
        np.testing.assert_allclose(probs, want, atol=1e-5)
        process._proc.kill()  # noqa: SLF001 - a teacher process that died
        process._proc.wait()  # noqa: SLF001
        np.testing.assert_allclose(process.predict_proba(texts), want, atol=1e-5)  # started again
    finally:
        process.close()
    assert process.pid is None
