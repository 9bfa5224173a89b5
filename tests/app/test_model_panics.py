"""Issue 14: a model whose tokenizer panics (a Rust ``PanicException``, a ``BaseException``).

Real files, real transformers and tokenizers: the tiny BERT teacher with a ``tokenizer.json``
whose split regex makes the Rust library panic on a long run of one letter. Before the fix
the micro-batcher caught only ``Exception``: the batch's futures never finished (the request
hung) and the batcher stayed busy, so every later predict on that model hung too.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from app.services.inference import InferenceService, ModelFailed, _Loaded
from app.storage import ArtifactStore
from tests.panicky import PANIC_TEXT, make_panicking_tokenizer


@pytest.fixture(scope="module")
def panicking_teacher(tiny_teacher_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    model = tmp_path_factory.mktemp("panicky") / "teacher"
    shutil.copytree(tiny_teacher_dir, model)
    make_panicking_tokenizer(model)
    return model


def _service(tmp_path, dirs: dict) -> InferenceService:  # noqa: ANN001
    from lelp.artifacts import load_predictor

    service = InferenceService(ArtifactStore(str(tmp_path)), cache_dir=tmp_path, cache_size=4, max_batch=8,
                               inline_below_s=0.0)

    def load(model_id: str, uri: str) -> _Loaded:
        predictor = load_predictor(dirs[model_id])
        return _Loaded(predictor=predictor, labels=[str(x) for x in predictor.labels])

    service._load_sync = load  # noqa: SLF001
    return service


def test_a_panicking_tokenizer_fails_its_request_and_the_model_is_refused(
        tmp_path, panicking_teacher, tiny_teacher_dir) -> None:  # noqa: ANN001
    pytest.importorskip("tokenizers")
    service = _service(tmp_path, {"mdl_panic": panicking_teacher, "mdl_ok": tiny_teacher_dir})

    async def scenario() -> dict:
        out: dict = {}
        fine = await asyncio.wait_for(service.predict("mdl_panic", "u", ["a good film"]), 60)
        out["before"] = fine[0]["label"]
        started = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(
            service.predict("mdl_panic", "u", [PANIC_TEXT]),
            service.predict("mdl_panic", "u", ["queued behind it"]),
            return_exceptions=True), 30)  # the old batcher never finished these
        out["crash_s"] = time.perf_counter() - started
        out["results"] = results
        try:
            await asyncio.wait_for(service.predict("mdl_panic", "u", ["a good film"]), 5)
        except ModelFailed as exc:
            out["after"] = exc
        out["other"] = await asyncio.wait_for(service.predict("mdl_ok", "u", ["a good film"]), 60)
        return out

    out = asyncio.run(scenario())
    first = out["results"][0]
    assert isinstance(first, ModelFailed) and first.code == "model_failed"
    assert "PanicException" in first.message
    assert all(isinstance(r, ModelFailed) or isinstance(r, list) for r in out["results"])
    assert out["crash_s"] < 30
    assert isinstance(out.get("after"), ModelFailed) and "mdl_panic" in out["after"].message
    assert "mdl_panic" not in service.loaded_ids()  # unloaded
    assert out["other"][0]["label"] in ("negative", "positive")  # other models are not affected
    service.close()


def test_panicking_tokenizer_is_refused_at_upload(client, auth_a, panicking_teacher) -> None:  # noqa: ANN001
    from tests.app.conftest import tar_gz_of

    started = time.perf_counter()
    r = client.post("/v1/teachers", headers=auth_a,
                    files={"file": ("model.tar.gz", tar_gz_of(panicking_teacher), "application/gzip")})
    elapsed = time.perf_counter() - started
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_teacher" and error["param"] == "file"
    assert "PanicException" in error["message"] and "probe" in error["message"]
    assert elapsed < 30
    assert client.app.state.store.list_files("teachers") == []
