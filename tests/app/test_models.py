"""Models: get/list/delete, artifact download, predict validation, real predictions, micro-batching."""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.services.inference import InferenceService, _Loaded


def test_get_list_delete(client, auth_a, make_model, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)
    assert model["id"].startswith("mdl_") and model["labels"] == ["negative", "positive"]
    assert model["metrics"]["agreement"] == 0.9 and model["parameters"] == 1234
    job = client.get(f"/v1/jobs/{model['job_id']}", headers=auth_a).json()
    assert job["model_id"] == model["id"] and job["status"] == "succeeded"
    listed = client.get("/v1/models", headers=auth_a).json()
    assert [m["id"] for m in listed["data"]] == [model["id"]]
    assert client.delete(f"/v1/models/{model['id']}", headers=auth_a).status_code == 204
    assert client.get(f"/v1/models/{model['id']}", headers=auth_a).status_code == 404
    assert client.app.state.store.list_files(f"models/{model['id']}") == []


def test_artifact_download_is_a_tar_gz_of_the_directory(client, auth_a, make_model, tiny_teacher_dir, job_body) -> None:  # noqa: ANN001, E501
    model = make_model(auth_a, job_body)
    r = client.get(f"/v1/models/{model['id']}/artifact", headers=auth_a)
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        config = tar.extractfile(f"{model['id']}/config.json").read()
    assert f"{model['id']}/model.safetensors" in names
    assert config == (tiny_teacher_dir / "config.json").read_bytes()
    assert list((client.app.state.settings.data_dir / "tmp").glob("*.tar.gz")) == []  # temp tarball removed


def test_predict_with_a_real_predictor(client, auth_a, make_model, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a,
                    json={"inputs": ["a good movie", "an awful plot", "the film"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == model["id"] and len(body["predictions"]) == 3
    for p in body["predictions"]:
        assert p["label"] in ("negative", "positive")
        assert set(p["probabilities"]) == {"negative", "positive"}
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["score"] == max(p["probabilities"].values())


PREDICT_ERRORS = [
    ({"inputs": []}, 422, "invalid_request", "inputs"),
    ({"inputs": [1, 2]}, 422, "invalid_request", "inputs"),
    ({"inputs": ["ok", None]}, 422, "invalid_request", "inputs"),
    ({"inputs": "just a string"}, 422, "invalid_request", "inputs"),
    ({"inputs": [{"text": "a"}]}, 422, "invalid_request", "inputs"),
    ({"inputs": ["a"], "top_k": 3}, 422, "invalid_request", "top_k"),
    ({}, 422, "invalid_request", "inputs"),
]


@pytest.mark.parametrize("body, status, code, param", PREDICT_ERRORS)
def test_predict_validation(client, auth_a, make_model, body, status, code, param, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)
    r = client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["param"].startswith(param)


def test_predict_limits_and_malformed_json(make_client, auth_a, db, make_model, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)
    client = make_client(max_predict_inputs=4, max_text_chars=1000)
    url = f"/v1/models/{model['id']}/predict"
    r = client.post(url, headers=auth_a, json={"inputs": ["x"] * 5})
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_inputs"
    r = client.post(url, headers=auth_a, json={"inputs": ["ok", "y" * 1_000_000]})
    assert r.status_code == 422 and r.json()["error"] == {
        "code": "input_too_long", "message": r.json()["error"]["message"], "param": "inputs.1"}
    r = client.post(url, headers={**auth_a, "Content-Type": "application/json"}, content=b'{"inputs": [')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post("/v1/models/mdl_nope/predict", headers=auth_a, json={"inputs": ["a"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


class FakePredictor:
    """Counts calls and rows; probabilities encode the text length so results can be checked."""

    labels = ["short", "long"]

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.threads: set[str] = set()

    def predict_proba(self, texts, text_pairs=None):  # noqa: ANN001, ANN201
        self.calls.append(len(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02)  # a forward pass takes time: requests pile up meanwhile
        p = np.array([min(len(t), 10) / 10 for t in texts], dtype=np.float32)
        return np.stack([1 - p, p], axis=1)


def test_micro_batcher_merges_concurrent_requests(tmp_path) -> None:  # noqa: ANN001
    from app.storage import ArtifactStore

    fake = FakePredictor()
    service = InferenceService(ArtifactStore(str(tmp_path)), cache_dir=tmp_path, cache_size=2, max_batch=64)
    service._load_sync = lambda model_id, uri: _Loaded(predictor=fake, labels=fake.labels)  # noqa: SLF001

    async def main() -> list:
        texts = [["x" * (i % 10)] * (1 + i % 3) for i in range(40)]
        results = await asyncio.gather(*(service.predict("mdl_1", "models/mdl_1", t) for t in texts))
        return list(zip(texts, results, strict=True))

    pairs = asyncio.run(main())
    service.close()
    assert sum(fake.calls) == sum(len(t) for t, _ in pairs)
    assert len(fake.calls) < 10  # 40 requests, a handful of forwards
    assert max(fake.calls) <= 64 + 2
    assert "MainThread" not in fake.threads  # never on the event loop's thread
    for texts, result in pairs:
        assert len(result) == len(texts)
        expected = min(len(texts[0]), 10) / 10
        assert abs(result[0]["probabilities"]["long"] - expected) < 1e-6


def test_lru_evicts_and_errors_reach_every_waiter(tmp_path) -> None:  # noqa: ANN001
    from app.storage import ArtifactStore

    loads: list[str] = []

    class Broken(FakePredictor):
        def predict_proba(self, texts, text_pairs=None):  # noqa: ANN001, ANN201
            raise RuntimeError("boom")

    def load(model_id: str, uri: str) -> _Loaded:
        loads.append(model_id)
        predictor = Broken() if model_id == "bad" else FakePredictor()
        return _Loaded(predictor=predictor, labels=predictor.labels)

    service = InferenceService(ArtifactStore(str(tmp_path)), cache_dir=tmp_path, cache_size=2, max_batch=8)
    service._load_sync = load  # noqa: SLF001

    async def main() -> list:
        for model_id in ("a", "b", "a", "c", "a", "b"):
            await service.predict(model_id, "u", ["t"])
        return await asyncio.gather(*(service.predict("bad", "u", ["t"]) for _ in range(3)), return_exceptions=True)

    errors = asyncio.run(main())
    service.close()
    assert loads[:5] == ["a", "b", "c", "b", "bad"]
    assert all(isinstance(e, RuntimeError) for e in errors)


def test_concurrent_http_predictions(client, auth_a, make_model, job_body) -> None:  # noqa: ANN001
    model = make_model(auth_a, job_body)
    url = f"/v1/models/{model['id']}/predict"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: client.post(url, headers=auth_a, json={"inputs": [f"good {i}"] * 3}),
                                range(16)))
    assert all(r.status_code == 200 and len(r.json()["predictions"]) == 3 for r in results)
