"""ONNX downloads (built once, checked, cached, tenant-scoped) and serving on onnxruntime."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def ngram_student(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path_factory) -> Path:
    from lelp.pipeline import DistillConfig, distill

    out = tmp_path_factory.mktemp("service-students") / "ngram"
    distill(DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv),
                          eval_path=str(tiny_eval_csv), student="ngram", method="lelp", subclasses=2, epochs=1,
                          max_length=32,
                          student_options={"n_features": 2**12, "embedding_dim": 16, "hidden": 32}), out)
    return out


@pytest.fixture
def make_student_model(db, ngram_student):  # noqa: ANN001, ANN201
    """A finished job of ``client`` whose model files are a real ngram student; ``exports=True``: with the
    ONNX packages a worker builds for a stored model (``worker.exports.build_model_exports``)."""

    def make(client, headers: dict, body: dict, exports: bool = False) -> dict:  # noqa: ANN001
        from app.db import job_states
        from app.db import repositories as repo
        from app.db.base import utcnow
        from app.db.models import Job

        job = client.post("/v1/jobs", headers=headers, json=body).json()
        assert job_states.claim(db, job["id"], utcnow())
        model_id = f"mdl_{job['id'][4:]}"
        client.app.state.store.put_dir(ngram_student, f"models/{model_id}")
        metrics = json.loads((ngram_student / "metrics.json").read_text())
        assert job_states.finish(db, job["id"], "succeeded", metrics=metrics, model_id=model_id)
        repo.create_model(db, tenant_id=db.get(Job, job["id"]).tenant_id, job_id=job["id"],
                          teacher_id=job["teacher_id"], method="lelp", kind="ngram",
                          labels=["negative", "positive"], uri=f"models/{model_id}", metrics=metrics,
                          parameters=1, size_bytes=1, model_id=model_id)
        db.commit()
        if exports:
            from worker.exports import build_model_exports

            built = build_model_exports(client.app.state.settings, model_id)
            assert [b.variant for b in built] == ["onnx-fp32", "onnx-int8"] and all(b.error is None for b in built)
        return client.get(f"/v1/models/{model_id}", headers=headers).json()

    return make


def _unzip(content: bytes, target: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        archive.extractall(target)
    return target


def test_onnx_download_is_checked_recorded_and_cached(client, auth_a, auth_b, job_body, make_student_model,
                                                      ngram_student, tmp_path) -> None:  # noqa: ANN001
    from lelp.artifacts import load_student
    from lelp.export import OnnxPredictor

    model = make_student_model(client, auth_a, job_body, exports=True)
    url = f"/v1/models/{model['id']}/artifact?format=onnx"
    assert client.get(url, headers=auth_b).status_code == 404  # another tenant's model does not exist
    r = client.get(url, headers=auth_a)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    package = _unzip(r.content, tmp_path / "pkg")
    texts = ["good great film", "bad awful plot", "the match"]
    np.testing.assert_allclose(OnnxPredictor(package).predict_proba(texts),
                               load_student(ngram_student).predict_proba(texts), atol=1e-4)

    check = client.get(f"/v1/models/{model['id']}", headers=auth_a).json()["metrics"]["export"]["onnx-fp32"]
    assert check["passed"] and check["rows"] == 160  # the job's (train) dataset: every row, labelled
    assert check["rows_source"] == f"train dataset {job_body['train_dataset_id']}"
    assert client.app.state.store.exists(f"exports/{model['id']}/onnx-fp32.zip")
    assert client.get(url, headers=auth_a).content == r.content  # cached: the same file again

    r8 = client.get(url + "&quantize=int8", headers=auth_a)
    assert r8.status_code == 200 and r8.content != r.content
    metrics = client.get(f"/v1/models/{model['id']}", headers=auth_a).json()["metrics"]
    assert set(metrics["export"]) == {"onnx-fp32", "onnx-int8"} and metrics["student"]  # figures kept
    assert metrics["export"]["onnx-int8"]["int8"]["accuracy"] is not None
    report = client.get(f"/v1/models/{model['id']}/report", headers=auth_a)  # drawn before the exports
    assert report.status_code == 200 and "No export yet" not in report.text
    assert '<tr data-variant="onnx-fp32">' in report.text and '<tr data-variant="onnx-int8">' in report.text

    assert client.delete(f"/v1/models/{model['id']}", headers=auth_a).status_code == 204
    assert client.app.state.store.list_files(f"exports/{model['id']}") == []


@pytest.mark.parametrize("query, param", [("format=tflite", "format"), ("format=onnx&quantize=int4", "quantize"),
                                          ("quantize=int8", "quantize")])
def test_bad_export_requests_are_422(client, auth_a, job_body, make_student_model, query, param) -> None:  # noqa: ANN001
    model = make_student_model(client, auth_a, job_body)
    r = client.get(f"/v1/models/{model['id']}/artifact?{query}", headers=auth_a)
    assert r.status_code == 422 and r.json()["error"]["param"] == param, r.text


def test_a_directory_that_is_no_student_cannot_export(client, auth_a, job_body, make_model) -> None:  # noqa: ANN001
    from worker.exports import build_model_exports

    model = make_model(auth_a, job_body)  # its files are a teacher directory
    built = build_model_exports(client.app.state.settings, model["id"])  # what the worker asked for does
    assert [b.error is not None for b in built] == [True, True]
    r = client.get(f"/v1/models/{model['id']}/artifact?format=onnx", headers=auth_a)
    assert r.status_code == 422 and r.json()["error"]["code"] == "export_failed"
    assert "not a LELP student" in r.json()["error"]["message"] or "lelp_student.json" in r.json()["error"]["message"]
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": ["a good film"]})
    assert r.status_code == 200  # served on torch as before
    assert client.get(f"/v1/models/{model['id']}", headers=auth_a).json()["runtime"] == "torch"


def test_the_api_never_builds_an_export(client, auth_a, job_body, make_student_model, monkeypatch) -> None:  # noqa: ANN001
    """Issue 19: the first predict built the package in the API process (7-11 s). A model without its
    package (published before the worker built them) is a 503 + Retry-After while a worker is asked once;
    predict serves it on torch meanwhile; once the worker built it, the download is that file."""
    import app.queue
    import lelp.export.onnx_export as onnx_export

    asked: list[str] = []
    monkeypatch.setattr(app.queue, "enqueue_export", asked.append)
    monkeypatch.setattr(onnx_export, "build_package", lambda *a, **k: pytest.fail("the API process built an export"))
    model = make_student_model(client, auth_a, job_body)
    url = f"/v1/models/{model['id']}/artifact?format=onnx"
    for query in ("", "&quantize=int8"):
        r = client.get(url + query, headers=auth_a)
        assert r.status_code == 503 and r.json()["error"]["code"] == "export_building", r.text
        assert r.headers["Retry-After"] == "5"
    assert asked == [model["id"]]  # once, not per request
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": ["a good film"]})
    assert r.status_code == 200 and client.app.state.inference.runtime_of(model["id"]) == "torch"
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": ["ok"], "quantize": "int8"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "export_building"

    monkeypatch.undo()  # the worker's turn (worker.exports builds in its own process)
    from worker.exports import build_model_exports

    assert [b.variant for b in build_model_exports(client.app.state.settings, model["id"])] == ["onnx-fp32",
                                                                                               "onnx-int8"]
    assert build_model_exports(client.app.state.settings, model["id"]) == []  # idempotent
    assert client.get(url, headers=auth_a).status_code == 200
    events = client.get(f"/v1/jobs/{model['job_id']}/events", headers=auth_a).json()["data"]
    assert [e["data"]["variant"] for e in events if e["type"] == "export_built"] == ["onnx-fp32", "onnx-int8"]


def test_a_worker_without_onnxruntime_records_why(client, auth_a, job_body, make_student_model,
                                                  monkeypatch) -> None:  # noqa: ANN001
    """Not an endless 503: the API answers export_failed with the reason, predict is served on torch, the
    report leaves the failed variants out of its table."""
    import lelp.export
    from lelp.report.exports import export_rows
    from worker.exports import build_model_exports

    model = make_student_model(client, auth_a, job_body)
    monkeypatch.setattr(lelp.export, "onnxruntime_available", lambda: False)
    built = build_model_exports(client.app.state.settings, model["id"])
    assert [b.event()[0] for b in built] == ["export_failed", "export_failed"]
    monkeypatch.undo()
    r = client.get(f"/v1/models/{model['id']}/artifact?format=onnx", headers=auth_a)
    assert r.status_code == 422 and r.json()["error"]["code"] == "export_failed"
    assert "no ONNX support" in r.json()["error"]["message"]
    metrics = client.get(f"/v1/models/{model['id']}", headers=auth_a).json()["metrics"]
    assert export_rows(metrics) == [] and metrics["export"]["onnx-int8"]["error"]
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": ["a good film"]})
    assert r.status_code == 200 and client.app.state.inference.runtime_of(model["id"]) == "torch"


def test_students_are_served_on_onnxruntime_and_int8_only_when_asked(client, auth_a, job_body, make_student_model,
                                                                     ngram_student) -> None:  # noqa: ANN001
    from lelp.artifacts import load_student

    model = make_student_model(client, auth_a, job_body, exports=True)
    assert model["runtime"] == "onnxruntime"
    texts = ["good great film", "bad awful plot", "the match"]
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": texts})
    assert r.status_code == 200, r.text
    got = np.array([[p["probabilities"][c] for c in ("negative", "positive")] for p in r.json()["predictions"]])
    np.testing.assert_allclose(got, load_student(ngram_student).predict_proba(texts), atol=1e-4)
    inference = client.app.state.inference
    assert inference.runtime_of(model["id"]) == "onnxruntime" and inference.loaded_ids() == [model["id"]]
    assert inference.loaded_ids() == [model["id"]]  # the int8 package is there (built with fp32), not loaded

    r8 = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": texts, "quantize": "int8"})
    assert r8.status_code == 200, r8.text
    assert inference.loaded_ids() == [model["id"], f"{model['id']}#int8"]
    assert [p["label"] for p in r8.json()["predictions"]] == [p["label"] for p in r.json()["predictions"]]
    bad = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": texts, "quantize": "int4"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "quantize"


def test_torch_runtime_setting(make_client, auth_a, make_student_model, upload_teacher, upload_dataset) -> None:  # noqa: ANN001
    client = make_client(predict_runtime="torch")
    body = {"teacher_id": upload_teacher(auth_a)["id"], "train_dataset_id": upload_dataset(auth_a)["id"],
            "method": "lelp", "student": {"kind": "ngram"}}
    model = make_student_model(client, auth_a, body)
    assert model["runtime"] == "torch"
    assert client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": ["ok"]}).status_code == 200
    assert client.app.state.inference.runtime_of(model["id"]) == "torch"
    assert client.get("/v1/models", headers=auth_a).json()["data"][0]["runtime"] == "torch"
