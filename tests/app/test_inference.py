"""The inference service: continuous micro-batching, result routing, errors, LRU, inline tiny models.

No database: ``InferenceService`` is driven directly with fake predictors (and one real tiny
BERT for the "same answers as ``load_predictor``" check).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.services.inference import InferenceService, _Loaded
from app.storage import ArtifactStore


class FakePredictor:
    """Records every forward; P(long) encodes the text length so each answer can be checked."""

    labels = ["short", "long"]

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self.threads: list[str] = []

    def predict_proba(self, texts, text_pairs=None):  # noqa: ANN001, ANN201
        self.calls.append(list(texts))
        self.threads.append(threading.current_thread().name)
        if any(t == "boom" for t in texts):
            raise RuntimeError("boom")
        if self.delay:
            time.sleep(self.delay)  # a forward takes time: requests queue up meanwhile
        p = np.array([min(len(t), 10) / 10 for t in texts], dtype=np.float32)
        return np.stack([1 - p, p], axis=1)


def make_service(tmp_path: Path, predictors: dict[str, FakePredictor], loads: list[str] | None = None,
                 **kwargs) -> InferenceService:  # noqa: ANN003
    defaults = dict(cache_size=2, max_batch=64)
    service = InferenceService(ArtifactStore(str(tmp_path)), cache_dir=tmp_path, **{**defaults, **kwargs})

    def load(model_id: str, uri: str) -> _Loaded:
        if loads is not None:
            loads.append(model_id)
        predictor = predictors.setdefault(model_id, FakePredictor())
        return _Loaded(predictor=predictor, labels=predictor.labels)

    service._load_sync = load  # noqa: SLF001
    return service


def expected_long(text: str) -> float:
    return min(len(text), 10) / 10


def test_concurrent_requests_share_forwards_and_get_their_own_answers(tmp_path) -> None:  # noqa: ANN001
    fake = FakePredictor()
    service = make_service(tmp_path, {"m": fake}, max_batch=16)
    requests = [["x" * (i % 11)] * (1 + i % 3) for i in range(60)]

    async def main() -> list:
        return await asyncio.gather(*(service.predict("m", "models/m", texts) for texts in requests))

    results = asyncio.run(main())
    service.close()
    assert sum(len(c) for c in fake.calls) == sum(len(r) for r in requests)  # every row scored once
    assert len(fake.calls) < len(requests) / 3  # 60 requests, far fewer forwards
    assert max(len(c) for c in fake.calls) <= 16  # never over max_batch (no single request is larger)
    assert "MainThread" not in fake.threads  # a slow model never runs on the event loop
    assert len(set(fake.threads)) == 1  # ...and always in the model's one thread
    for texts, result in zip(requests, results, strict=True):
        assert len(result) == len(texts)
        for text, prediction in zip(texts, result, strict=True):
            assert prediction["probabilities"]["long"] == pytest.approx(expected_long(text))
            assert prediction["label"] == ("long" if expected_long(text) > 0.5 else "short")


def test_an_idle_model_answers_without_waiting_for_the_window(tmp_path) -> None:  # noqa: ANN001
    fake = FakePredictor(delay=0)
    service = make_service(tmp_path, {"m": fake})  # continuous batching: no window to wait for

    async def main() -> float:
        await service.predict("m", "models/m", ["warm"])  # load the model first
        started = time.perf_counter()
        for _ in range(5):
            await service.predict("m", "models/m", ["hello"])
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    service.close()
    assert elapsed < 1.0  # 5 sequential requests: no 2 s window each


def test_a_failing_batch_fails_only_its_own_requests(tmp_path) -> None:  # noqa: ANN001
    fake = FakePredictor(delay=0.1)
    service = make_service(tmp_path, {"m": fake})

    async def main() -> tuple:
        first = asyncio.create_task(service.predict("m", "models/m", ["first"]))
        await asyncio.sleep(0.03)  # "first" is now running in the model's thread
        queued = [asyncio.create_task(service.predict("m", "models/m", [t])) for t in ("boom", "victim")]
        outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
        after = await service.predict("m", "models/m", ["after"])  # the model still works
        return outcomes, after

    (first, boom, victim), after = asyncio.run(main())
    service.close()
    assert fake.calls[:2] == [["first"], ["boom", "victim"]]
    assert first[0]["probabilities"]["long"] == pytest.approx(0.5)
    assert isinstance(boom, RuntimeError) and isinstance(victim, RuntimeError)  # same batch: same error
    assert after[0]["probabilities"]["long"] == pytest.approx(0.5)


def test_lru_keeps_at_most_cache_size_models(tmp_path) -> None:  # noqa: ANN001
    loads: list[str] = []
    service = make_service(tmp_path, {}, loads=loads, cache_size=2)

    async def use(*ids: str) -> None:
        for model_id in ids:
            await service.predict(model_id, f"models/{model_id}", ["a"])

    asyncio.run(use("a", "b", "a", "c"))  # "b" is the least recently used when "c" arrives
    assert service.loaded_ids() == ["a", "c"]
    asyncio.run(use("b"))
    assert service.loaded_ids() == ["c", "b"] and loads == ["a", "b", "c", "b"]
    service.close()


def test_evict_forgets_the_model_and_its_cached_rows(tmp_path) -> None:  # noqa: ANN001
    service = make_service(tmp_path, {})
    service.remember_ref("tenant1", "m", "models/m")
    service.remember_ref("tenant2", "other", "models/other")
    asyncio.run(service.predict("m", "models/m", ["a"]))
    service.evict("m")
    assert service.loaded_ids() == []
    assert service.cached_ref("tenant1", "m") is None
    assert service.cached_ref("tenant2", "other") is not None
    service.close()


def test_a_fast_model_runs_inline_after_its_first_forward(tmp_path) -> None:  # noqa: ANN001
    fast = FakePredictor(delay=0)
    service = make_service(tmp_path, {"m": fast}, inline_below_s=0.05)

    async def main() -> None:
        for _ in range(3):
            await service.predict("m", "models/m", ["abc"])

    asyncio.run(main())
    service.close()
    assert fast.threads[0] != "MainThread"  # not measured yet: the thread
    assert fast.threads[1:] == ["MainThread", "MainThread"]  # measured fast: no thread hop


def test_predictions_match_load_predictor(tmp_path, tiny_teacher_dir) -> None:  # noqa: ANN001
    from lelp.artifacts import load_predictor

    texts = ["a lovely warm film", "dull and grim", "the team won the match", "ok"]
    direct = load_predictor(tiny_teacher_dir).predict(texts)
    service = InferenceService(ArtifactStore(str(tiny_teacher_dir.parent)), cache_dir=tmp_path, cache_size=1,
                               max_batch=3)

    async def main() -> list:
        return await asyncio.gather(*(service.predict("m", tiny_teacher_dir.name, [t]) for t in texts))

    served = [r[0] for r in asyncio.run(main())]
    service.close()
    for got, want in zip(served, direct, strict=True):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


def test_a_request_larger_than_max_batch_is_scored_in_slices_in_order(tmp_path) -> None:  # noqa: ANN001
    fake = FakePredictor(delay=0.0)
    service = make_service(tmp_path, {"m": fake}, max_batch=4)
    texts = ["x" * (i % 11) for i in range(10)]
    result = asyncio.run(service.predict("m", "models/m", texts))
    service.close()
    assert max(len(c) for c in fake.calls) <= 4 and sum(len(c) for c in fake.calls) == 10
    assert [p["probabilities"]["long"] for p in result] == pytest.approx([expected_long(t) for t in texts])


class PerRowPredictor(FakePredictor):
    """A forward that costs ``per_row`` seconds a row (time.sleep: holds the loop when run inline)."""

    def __init__(self, per_row: float) -> None:
        super().__init__(delay=0)
        self.per_row = per_row

    def predict_proba(self, texts, text_pairs=None):  # noqa: ANN001, ANN201
        time.sleep(self.per_row * len(texts))
        return super().predict_proba(texts, text_pairs)


def test_a_large_batch_of_a_fast_model_leaves_the_event_loop_free(tmp_path) -> None:  # noqa: ANN001
    """Issue 18: one-row batches of a fast model run inline, but the largest allowed batch goes to the
    model's thread, so a /healthz meanwhile waits for no forward (loop gaps stay far under 100 ms)."""
    model = PerRowPredictor(per_row=0.004)
    service = make_service(tmp_path, {"m": model}, inline_below_s=0.01, max_batch=64)

    async def main() -> float:
        for _ in range(3):  # measured: 4 ms a row, so one row (4 ms < 10 ms) runs inline
            await service.predict("m", "models/m", ["a"])
        gaps: list[float] = []
        done = asyncio.Event()

        async def probe() -> None:  # what a /healthz handler sees: how long the loop is held
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(probe())
        await asyncio.sleep(0.01)
        await service.predict("m", "models/m", ["a long input"] * 64)  # 64 x 4 ms = 256 ms of forward
        done.set()
        await task
        return max(gaps)

    worst = asyncio.run(main())
    service.close()
    assert model.threads[1:3] == ["MainThread", "MainThread"]
    assert model.threads[-1] != "MainThread"
    assert worst < 0.1, f"the event loop was held {worst * 1000:.0f} ms"
