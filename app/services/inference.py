"""Predictions: an LRU of loaded students and an asyncio micro-batcher per model.

Concurrent predict requests for one model are gathered for up to
``predict_batch_window_ms`` (or until ``predict_max_batch`` rows) and scored by one
``predict_proba`` call in a worker thread, so the event loop never runs a forward pass
and the per-call overhead of the model is shared. While a batch runs, the next one
fills up. ``lelp.artifacts`` (and so torch) is imported only when a model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import Unprocessable
from app.storage import ArtifactStore

log = logging.getLogger(__name__)


@dataclass
class _Request:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future


class MicroBatcher:
    """Collects requests into batches and runs them one at a time in a thread."""

    def __init__(self, predictor: Any, *, max_batch: int, window_s: float, on_batch=None) -> None:  # noqa: ANN001
        self.predictor = predictor
        self.max_batch = max_batch
        self.window_s = window_s
        self.on_batch = on_batch
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.task = self.loop.create_task(self._run())

    async def submit(self, texts: list[str], pairs: list[str] | None) -> Any:
        """Class probabilities (n, C) for ``texts`` (and ``pairs``), scored with other requests."""
        future = self.loop.create_future()
        await self.queue.put(_Request(texts, pairs, future))
        return await future

    async def _collect(self) -> list[_Request]:
        batch = [await self.queue.get()]
        rows = len(batch[0].texts)
        deadline = self.loop.time() + self.window_s
        while rows < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(item)
            rows += len(item.texts)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            live = [r for r in batch if not r.future.done()]  # a client that went away costs nothing
            if not live:
                continue
            texts = [t for r in live for t in r.texts]
            pairs = [p for r in live for p in r.pairs] if live[0].pairs is not None else None
            try:
                probs = await asyncio.to_thread(self.predictor.predict_proba, texts, pairs)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(texts))
            start = 0
            for r in live:
                end = start + len(r.texts)
                if not r.future.done():
                    r.future.set_result(probs[start:end])
                start = end

    def close(self) -> None:
        self.task.cancel()


@dataclass
class _Loaded:
    predictor: Any
    labels: list[str]
    batchers: dict[tuple[bool, int], MicroBatcher] = field(default_factory=dict)

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        self.batchers.clear()


class InferenceService:
    """Loads students on demand (bounded LRU) and serves predictions through micro-batchers."""

    def __init__(self, store: ArtifactStore, *, cache_dir: Path, cache_size: int, max_batch: int,
                 window_ms: float, metrics=None) -> None:  # noqa: ANN001
        self.store = store
        self.cache_dir = cache_dir
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.window_s = window_ms / 1000.0
        self.metrics = metrics
        self._models: OrderedDict[str, _Loaded] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def _load_sync(self, model_id: str, uri: str) -> _Loaded:
        from lelp.artifacts import load_predictor  # imports torch: only here, only once per model

        local = self.store.local_path(uri)
        if local is None:
            local = self.store.get_dir(uri, self.cache_dir / model_id)
        predictor = load_predictor(local)
        return _Loaded(predictor=predictor, labels=[str(label) for label in predictor.labels])

    async def _get(self, model_id: str, uri: str) -> _Loaded:
        loaded = self._models.get(model_id)
        if loaded is not None:
            self._models.move_to_end(model_id)
            return loaded
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            loaded = self._models.get(model_id)
            if loaded is None:
                loaded = await asyncio.to_thread(self._load_sync, model_id, uri)
                self._models[model_id] = loaded
                while len(self._models) > self.cache_size:
                    old_id, old = self._models.popitem(last=False)
                    old.close()
                    self._locks.pop(old_id, None)
        self._models.move_to_end(model_id)
        return loaded

    def _batcher(self, loaded: _Loaded, pairs: bool) -> MicroBatcher:
        loop_key = (pairs, id(asyncio.get_running_loop()))
        batcher = loaded.batchers.get(loop_key)
        if batcher is None:
            on_batch = self.metrics.predict_batches.observe if self.metrics is not None else None
            batcher = MicroBatcher(loaded.predictor, max_batch=self.max_batch, window_s=self.window_s,
                                   on_batch=on_batch)
            loaded.batchers[loop_key] = batcher
        return batcher

    async def predict(self, model_id: str, uri: str, texts: Sequence[str],
                      pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One ``{"label", "score", "probabilities"}`` per input, in order."""
        loaded = await self._get(model_id, uri)
        probs = await self._batcher(loaded, pairs is not None).submit(list(texts),
                                                                     list(pairs) if pairs is not None else None)
        if len(probs) != len(texts) or (len(probs) and len(probs[0]) != len(loaded.labels)):
            raise Unprocessable("the model returned an unexpected number of scores", code="invalid_artifact")
        if self.metrics is not None:
            self.metrics.predict_rows.inc(len(texts))
        out = []
        for row in probs:
            values = [float(p) for p in row]
            best = max(range(len(values)), key=values.__getitem__)
            out.append({"label": loaded.labels[best], "score": values[best],
                        "probabilities": dict(zip(loaded.labels, values, strict=True))})
        return out

    def evict(self, model_id: str) -> None:
        loaded = self._models.pop(model_id, None)
        if loaded is not None:
            loaded.close()

    def close(self) -> None:
        for loaded in self._models.values():
            loaded.close()
        self._models.clear()
