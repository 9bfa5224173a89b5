"""Predictions: an LRU of loaded models and a continuous micro-batcher per model.

Why it is shaped this way (measured with ``benchmarks/serving.py``):

* **No idle wait.** A request that finds the model idle is dispatched on the next turn of
  the event loop (``call_soon``), so requests parsed in the same turn share a batch and a
  lone request pays no window. While a batch runs, new requests queue up; when it ends,
  everything queued (up to ``predict_max_batch`` rows) goes as the next batch at once
  ("continuous batching"). The batch size thus follows the load without any timer.
* **One dedicated thread per model.** Forwards run in that model's single worker thread
  (torch releases the GIL, so the event loop keeps parsing requests meanwhile); results
  come back through ``loop.call_soon_threadsafe``. One thread per model also means a
  model never runs two forwards at once, which is what makes the queue fill up.
* **Tiny models inline, bounded.** When a batch's expected forward time (the model's measured
  time per row times the batch's rows) is under ``inline_below_s`` (an ``ngram`` student on a
  few rows: tens of microseconds), the thread hop costs more than the forward, so the batch runs
  on the event loop itself. A batch expected to take longer (the largest allowed batch of the
  same model) goes to the model's thread, so ``/healthz`` and other requests never wait on a
  forward for more than about ``inline_below_s`` (issue 18).
* **Cheap lookups.** Loaded models sit in a bounded LRU; model rows (tenant + id -> id and
  artifact URI) sit in a short TTL cache so a predict does not query the database.
* **A runtime per model.** With ``runtime="auto"`` a student whose kind exports to ONNX is
  served on onnxruntime when it is installed (the checked fp32 package of
  ``app.services.exports``), anything else on torch; a failed export falls back to torch.
  int8 is served only to requests that ask for it (``quantize="int8"``), as its own LRU entry.

``lelp.artifacts`` (and so torch) is imported only when a model is loaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetools import TTLCache

from app.errors import Unprocessable
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

#: A model whose average batch forward is faster than this runs on the event loop.
INLINE_BELOW_S = 0.0005
#: Weight of the newest forward time in the moving average.
EWMA_WEIGHT = 0.2


class ModelFailed(Unprocessable):
    """A model's own code (tokenizer, forward) crashed: the model is unloaded and refused."""

    code = "model_failed"


def _is_fatal(error: BaseException) -> bool:
    """A ``BaseException`` that is not an ``Exception``: a Rust panic (``pyo3_runtime.PanicException``),
    a ``SystemExit`` or ``KeyboardInterrupt`` raised inside model code. The model's state is
    unknown after it, so it is never called again."""
    return not isinstance(error, Exception)


class ModelThread:
    """The one daemon thread a model's forwards run in, started on first use.

    A ``ThreadPoolExecutor``'s threads are joined at interpreter exit, so a forward stuck in
    native code kept ``lelp serve`` from ever stopping; a daemon thread does not.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._jobs.put((fn, args))

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args = job
            fn(*args)  # MicroBatcher._work catches everything itself

    def shutdown(self, wait: bool = False) -> None:  # noqa: ARG002 - never waits: see the class docstring
        self._jobs.put(None)


@dataclass(slots=True)
class _Request:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future


class MicroBatcher:
    """Queues the requests of one model on one event loop and scores them in batches.

    ``submit`` is called on the loop; the forward runs in ``executor`` (one thread) or, for
    a model measured to be fast, inline. At most one batch per batcher is in flight.
    """

    def __init__(self, predictor: Any, *, max_batch: int, executor: ModelThread,
                 on_batch: Callable[[int], None] | None = None, inline_below_s: float = INLINE_BELOW_S,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.predictor = predictor
        self.on_fatal = on_fatal
        self.max_batch = max_batch
        self.executor = executor
        self.on_batch = on_batch
        self.inline_below_s = inline_below_s
        self.loop = asyncio.get_running_loop()
        self.pending: deque[_Request] = deque()
        self.busy = False              # a batch is running in the worker thread
        self.scheduled = False         # a _flush is already queued on the loop
        self.avg_forward_s: float | None = None  # None until the first forward is timed
        self.avg_row_s: float | None = None      # per row: what bounds an inline batch
        self.closed = False

    def runs_inline(self, rows: int) -> bool:
        """A batch of ``rows`` is expected to be faster than a thread hop (and so cannot stall the loop)."""
        return self.avg_row_s is not None and self.avg_row_s * rows < self.inline_below_s

    async def submit(self, texts: list[str], pairs: list[str] | None) -> Any:
        """Class probabilities (n, C) for ``texts`` (and ``pairs``), scored with other requests."""
        if self.closed:
            raise ModelFailed("the model was unloaded while the request waited; send it again")
        if len(texts) > self.max_batch:  # one big request: max_batch-row slices, still batched with others
            import numpy as np

            step = self.max_batch
            parts = await asyncio.gather(*(
                self.submit(texts[i:i + step], pairs[i:i + step] if pairs is not None else None)
                for i in range(0, len(texts), step)))
            return np.concatenate(parts)
        future = self.loop.create_future()
        self.pending.append(_Request(texts, pairs, future))
        if not self.busy and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._flush)
        return await future

    def _take(self) -> list[_Request]:
        """The next batch: queued requests up to ``max_batch`` rows (always at least one request)."""
        batch: list[_Request] = []
        rows = 0
        while self.pending:
            request = self.pending[0]
            if request.future.done():  # the client went away: it costs nothing
                self.pending.popleft()
                continue
            if batch and rows + len(request.texts) > self.max_batch:
                break
            batch.append(self.pending.popleft())
            rows += len(request.texts)
        return batch

    def _flush(self) -> None:
        self.scheduled = False
        while not self.busy and not self.closed:
            batch = self._take()
            if not batch:
                return
            texts = [t for r in batch for t in r.texts]
            pairs = [p for r in batch for p in r.pairs] if batch[0].pairs is not None else None
            if self.runs_inline(len(texts)):
                started = time.perf_counter()
                try:
                    probs, error = self.predictor.predict_proba(texts, pairs), None
                except BaseException as exc:  # noqa: BLE001 - a panic too: every future must finish
                    probs, error = None, exc
                self._done(batch, len(texts), probs, error, time.perf_counter() - started)
                continue  # rows left over from a batch over max_batch go next
            self.busy = True
            self.executor.submit(self._work, batch, texts, pairs)

    def _work(self, batch: list[_Request], texts: list[str], pairs: list[str] | None) -> None:
        """Runs in the model's thread; hands the outcome back to the loop."""
        started = time.perf_counter()
        try:
            probs, error = self.predictor.predict_proba(texts, pairs), None
        except BaseException as exc:  # noqa: BLE001 - a panic too: an escaped one left busy=True for ever
            probs, error = None, exc
        elapsed = time.perf_counter() - started
        try:
            self.loop.call_soon_threadsafe(self._finish, batch, len(texts), probs, error, elapsed)
        except RuntimeError:  # the loop is closed (shutdown): nobody is waiting any more
            pass

    def _finish(self, batch: list[_Request], rows: int, probs: Any, error: BaseException | None,
                elapsed: float) -> None:
        self.busy = False
        self._done(batch, rows, probs, error, elapsed)
        if self.pending and not self.scheduled:
            self._flush()  # what queued during the forward goes now, as one batch

    def _done(self, batch: list[_Request], rows: int, probs: Any, error: BaseException | None,
              elapsed: float) -> None:
        self.avg_forward_s = elapsed if self.avg_forward_s is None else (
            (1 - EWMA_WEIGHT) * self.avg_forward_s + EWMA_WEIGHT * elapsed)
        per_row = elapsed / max(rows, 1)
        self.avg_row_s = per_row if self.avg_row_s is None else (
            (1 - EWMA_WEIGHT) * self.avg_row_s + EWMA_WEIGHT * per_row)
        if error is not None:
            log.warning("prediction batch of %d rows failed: %r", rows, error)
            if _is_fatal(error):
                what = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
                error = ModelFailed(f"the model's code crashed on this batch ({what}); the model was unloaded "
                                    "and is refused from now on: distil it again from a fixed teacher")
                if self.on_fatal is not None:
                    self.on_fatal(error)
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(error)
            return
        if self.on_batch is not None:
            self.on_batch(rows)
        start = 0
        for r in batch:
            end = start + len(r.texts)
            if not r.future.done():
                r.future.set_result(probs[start:end])
            start = end

    def close(self) -> None:
        """Fail whatever still waits; a running batch finishes and is delivered."""
        self.closed = True
        while self.pending:
            request = self.pending.popleft()
            if not request.future.done():
                request.future.set_exception(ModelFailed("the model was unloaded while the request waited; "
                                                         "send it again"))


def _model_thread(name: str) -> ModelThread:
    """The one thread a model's forwards run in (created lazily by the executor on first use)."""
    return ModelThread(f"lelp-predict-{name}")


@dataclass
class _Loaded:
    predictor: Any
    labels: list[str]
    runtime: str = "torch"
    executor: ModelThread = field(default_factory=lambda: _model_thread("model"))
    batchers: dict[tuple[bool, int], MicroBatcher] = field(default_factory=dict)

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        self.batchers.clear()
        self.executor.shutdown(wait=False)
        if self.runtime == "teacher-process":  # stop the cascade teacher's process
            self.predictor.close()


@dataclass(frozen=True, slots=True)
class ModelRef:
    """What predict needs of a model row: its id and where its files are."""

    id: str
    uri: str
    text_pairs: bool | None = None  # None: not recorded (a model older than the flag)
    cascade: dict | None = None     # models.cascade: served as a cascade (issue 22)
    teacher_id: str | None = None   # the cascade's teacher (its row id and store path)
    teacher_uri: str | None = None
    tenant_id: str | None = None
    max_length: int = 128           # the teacher's input length in the job


def freeze_heap() -> None:
    """Move every object alive now (the imported libraries: hundreds of thousands of objects that live
    as long as the process) out of the garbage collector's reach, once, at start-up.

    Under load the collector's oldest generation ran every second or two and walked all of them each
    time: 310-370 ms with the event loop stopped, collecting nothing (every predict in flight waited:
    the p99 of ~150 ms at 32 clients), and a fifth of the process's CPU. Frozen, the same collection
    takes 0.2 ms (benchmarks/README.md, "Serving at the machine's limit"). Objects created later (models
    loaded, requests) are collected as before. Once per process: an app built again in the same
    process (the tests build hundreds) would otherwise pay a full collection each time and freeze the
    garbage of the ones before it."""
    global _heap_frozen
    if _heap_frozen:
        return
    gc.collect()
    gc.freeze()
    _heap_frozen = True


_heap_frozen = False

#: a model load that imported at least this many modules brought a library with it (torch: ~1,000)
NEW_MODULES_TO_FREEZE = 20


def freeze_new_libraries(modules_before: int) -> bool:
    """After a model load that imported libraries (torch, for a model served on torch or a transformer
    student's featuriser), freeze the heap again so the collector stops walking them too; without a
    collection first (that would stop the event loop for the very walk freezing avoids). Frozen for
    good: the libraries, this model's objects (still freed by reference counting when evicted; kept
    only if in a reference cycle) and the cyclic garbage alive at that moment: once per library, so
    bounded. True when it froze."""
    if len(sys.modules) - modules_before < NEW_MODULES_TO_FREEZE:
        return False
    gc.freeze()
    return True


class InferenceService:
    """Loads models on demand (bounded LRU) and serves predictions through micro-batchers."""

    def __init__(self, store: ArtifactStore, *, cache_dir: Path, cache_size: int, max_batch: int,
                 metrics: Any = None, ref_ttl_s: float = 30.0,
                 inline_below_s: float = INLINE_BELOW_S, runtime: str = "auto", exports: Any = None,
                 teacher_threads: int = 0) -> None:
        # Continuous batching needs no timer: requests wait at most for the batch in flight.
        self.store = store
        self.cache_dir = cache_dir
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.metrics = metrics
        self.inline_below_s = inline_below_s
        self.runtime = runtime      # "auto" | "torch" | "onnxruntime" (settings.predict_runtime)
        self.exports = exports      # app.services.exports.OnnxExports, or None: torch only
        self._models: OrderedDict[str, _Loaded] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._refs: TTLCache[tuple[str, str], ModelRef] = TTLCache(maxsize=4096, ttl=ref_ttl_s)
        self._failed: dict[str, str] = {}  # model id -> why it was unloaded (a panic in its code)
        self._teachers: dict[str, _Loaded] = {}  # "teacher:{id}" -> its process: cascades only
        self.teacher_threads = teacher_threads

    # --- model rows (tenant + id -> ref), so a predict does not query the database -------------

    def cached_ref(self, tenant_id: str, model_id: str) -> ModelRef | None:
        return self._refs.get((tenant_id, model_id))

    def remember_ref(self, tenant_id: str, model_id: str, uri: str, text_pairs: bool | None = None,
                     **cascade: Any) -> ModelRef:
        """Cache a model row; ``cascade``: ``cascade``, ``teacher_id``, ``teacher_uri``, ``max_length``."""
        ref = ModelRef(model_id, uri, text_pairs, tenant_id=tenant_id, **cascade)
        self._refs[(tenant_id, model_id)] = ref
        return ref

    def forget_ref(self, tenant_id: str, model_id: str) -> None:
        """The model row changed (cascade on or off): the next predict reads it again."""
        self._refs.pop((tenant_id, model_id), None)

    # --- loaded models ------------------------------------------------------------------------------

    def planned_runtime(self, kind: str) -> str:
        """The runtime a model of this kind is served on here (before it is loaded)."""
        from lelp.export.runtime import serving_runtime  # torch-free

        return serving_runtime(kind, self.runtime if self.exports is not None else "torch")

    def warm_up(self) -> None:
        """Import what serving an ONNX package needs (onnxruntime, the tokenizer and hashing libraries;
        never torch) at start-up, so the first predict after a job ends loads a package in a fraction of
        a second instead of paying 2-5 s of imports (issue 19).

        In the start-up itself, not in a background thread: transformers' lazy module is not safe to
        import from two threads at once (a request's or a test's ``from transformers import BertConfig``
        beside the warm-up's import failed with "cannot import name" on a fresh install). Then the
        heap is frozen (``freeze_heap``), libraries included."""
        from lelp.export.runtime import onnxruntime_available  # torch-free

        if self.exports is not None and self.runtime != "torch" and onnxruntime_available():
            try:
                import onnxruntime  # noqa: F401
                import sklearn.feature_extraction  # noqa: F401 - the ngram student's hashing
                from transformers import PreTrainedTokenizerFast  # noqa: F401 - the table students' tokenizer

                import lelp.artifacts  # noqa: F401 - what loading a model imports first
            except Exception:  # noqa: BLE001 - advisory: the first predict imports them itself
                log.warning("warming up the serving runtime failed", exc_info=True)
        freeze_heap()

    def runtime_of(self, model_id: str) -> str | None:
        """The runtime of the loaded copy in this process (None when not loaded)."""
        loaded = self._models.get(model_id)
        return loaded.runtime if loaded is not None else None

    def _load_onnx(self, model_id: str, quantize: str | None) -> _Loaded:
        from lelp.export.runtime import OnnxPredictor

        package = self.exports.package_dir(model_id, quantize, self.cache_dir)
        predictor = OnnxPredictor(package)
        return _Loaded(predictor=predictor, labels=[str(label) for label in predictor.labels],
                       runtime=f"onnxruntime-{quantize}" if quantize else "onnxruntime",
                       executor=_model_thread(model_id))

    def _load_quantized(self, model_id: str, quantize: str) -> _Loaded:
        """A model's quantized onnxruntime export: only for requests that ask for it."""
        if self.exports is None:
            raise Unprocessable("this server serves no quantized models", param="quantize", code="onnx_unavailable")
        return self._load_onnx(model_id, quantize)

    def _load_sync(self, model_id: str, uri: str) -> _Loaded:
        from lelp.artifacts import (
            MANIFEST,
            load_predictor,  # imports torch: only here, only once per model
        )

        local = self.store.local_path(uri)
        if local is None:
            local = self.store.get_dir(uri, self.cache_dir / model_id)
        if self.exports is not None and self.runtime != "torch" and (local / MANIFEST).is_file():
            import json

            kind = json.loads((local / MANIFEST).read_text()).get("kind", "")
            if self.planned_runtime(kind) == "onnxruntime":
                try:
                    return self._load_onnx(model_id, None)
                except Exception as exc:  # noqa: BLE001 - any export failure: torch still serves the model
                    log.warning("model %s: no onnxruntime export (%s); serving it on torch", model_id,
                                getattr(exc, "message", repr(exc)))
        predictor = load_predictor(local)
        return _Loaded(predictor=predictor, labels=[str(label) for label in predictor.labels],
                       executor=_model_thread(model_id))

    async def _get(self, model_id: str, uri: str, quantize: str | None = None) -> _Loaded:
        key = model_id if quantize is None else f"{model_id}#{quantize}"
        loaded = self._models.get(key)
        if loaded is not None:
            self._models.move_to_end(key)
            return loaded
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            loaded = self._models.get(key)
            if loaded is None:
                modules_before = len(sys.modules)
                loaded = await (asyncio.to_thread(self._load_sync, model_id, uri) if quantize is None else
                                asyncio.to_thread(self._load_quantized, model_id, quantize))
                freeze_new_libraries(modules_before)
                self._models[key] = loaded
                while len(self._models) > self.cache_size:
                    old_id, old = self._models.popitem(last=False)
                    old.close()
                    self._locks.pop(old_id, None)
        self._models.move_to_end(key)
        return loaded

    # --- cascade teachers: one process each (app.services.teacher_process) ----------------------------

    def _load_teacher_sync(self, teacher_id: str, uri: str, max_length: int) -> _Loaded:
        from app.services.teacher_process import TeacherProcess

        local = self.store.local_path(uri)
        if local is None:
            local = self.store.get_dir(uri, self.cache_dir / "teachers" / teacher_id)
        on_batch = None
        if self.metrics is not None:
            on_batch = self.metrics.observe_teacher_batch
        process = TeacherProcess(local, max_length=max_length, threads=self.teacher_threads, on_batch=on_batch)
        process.start()
        return _Loaded(predictor=process, labels=process.labels, runtime="teacher-process",
                       executor=_model_thread(f"teacher-{teacher_id}"))

    async def _teacher(self, teacher_id: str, uri: str, max_length: int) -> _Loaded:
        key = f"teacher:{teacher_id}"
        loaded = self._teachers.get(key)
        if loaded is not None:
            return loaded
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            loaded = self._teachers.get(key)
            if loaded is None:
                loaded = await asyncio.to_thread(self._load_teacher_sync, teacher_id, uri, max_length)
                self._teachers[key] = loaded
        return loaded

    def teacher_pids(self) -> dict[str, int | None]:
        """Teacher id -> the pid of its process (None: not running)."""
        return {key.split(":", 1)[1]: loaded.predictor.pid for key, loaded in self._teachers.items()}

    async def predict_cascade(self, ref: ModelRef, texts: list[str], pairs: list[str] | None = None
                              ) -> tuple[list[dict[str, Any]], list[int]]:
        """The student on every row, the teacher on rows whose calibrated top probability is under the
        threshold; each record says ``served_by``. Returns the records and the deferred row indices."""
        import numpy as np

        cascade = ref.cascade or {}
        threshold = float(cascade["threshold"])
        probs, labels = await self.predict_proba(ref.id, ref.uri, texts, pairs)
        probs = np.asarray(probs, dtype=np.float64)
        deferred = [int(i) for i in np.flatnonzero(probs.max(1) < threshold)] if len(probs) else []
        served = ["student"] * len(texts)
        if deferred:
            teacher = await self._teacher(ref.teacher_id, ref.teacher_uri, ref.max_length)
            sub_pairs = [pairs[i] for i in deferred] if pairs is not None else None
            batcher = self._batcher(f"teacher:{ref.teacher_id}", teacher, pairs is not None)
            teacher_probs = await batcher.submit([texts[i] for i in deferred], sub_pairs)
            if list(teacher.labels) != list(labels):  # the job matched them: a reordering would be a bug
                raise Unprocessable("the teacher's labels differ from the student's", code="invalid_artifact")
            probs[deferred] = teacher_probs
            for i in deferred:
                served[i] = "teacher"
        if self.metrics is not None:
            self.metrics.predict_rows.inc(len(texts))
            self.metrics.observe_cascade(len(texts) - len(deferred), len(deferred))
        out = []
        for values, by in zip(probs.tolist(), served, strict=True):
            best = max(range(len(values)), key=values.__getitem__)
            out.append({"label": labels[best], "score": values[best],
                        "probabilities": dict(zip(labels, values, strict=True)), "served_by": by})
        return out, deferred

    def loaded_ids(self) -> list[str]:
        """Loaded model ids, least recently used first."""
        return list(self._models)

    def _batcher(self, model_id: str, loaded: _Loaded, pairs: bool) -> MicroBatcher:
        loop = asyncio.get_running_loop()
        key = (pairs, id(loop))
        batcher = loaded.batchers.get(key)
        if batcher is None or batcher.loop is not loop:
            on_batch = self.metrics.predict_batches.observe if self.metrics is not None else None
            batcher = MicroBatcher(loaded.predictor, max_batch=self.max_batch, executor=loaded.executor,
                                   on_batch=on_batch, inline_below_s=self.inline_below_s,
                                   on_fatal=lambda error: self._model_crashed(model_id, error))
            loaded.batchers[key] = batcher
        return batcher

    async def predict_proba(self, model_id: str, uri: str, texts: list[str], pairs: list[str] | None = None,
                            quantize: str | None = None) -> tuple[Any, list[str]]:
        """Class probabilities (n, C) and the label names, micro-batched with other requests."""
        if model_id in self._failed:
            raise ModelFailed(f"model {model_id} was unloaded after its code crashed ({self._failed[model_id]}); "
                              "it is refused until the service restarts: distil it again from a fixed teacher",
                              param="model_id")
        loaded = await self._get(model_id, uri, quantize)
        probs = await self._batcher(model_id, loaded, pairs is not None).submit(texts, pairs)
        return probs, loaded.labels

    def _model_crashed(self, model_id: str, error: BaseException) -> None:
        """Unload a model whose code raised a panic; later requests get ``model_failed`` at once."""
        log.error("model %s crashed and is unloaded: %s", model_id, error)
        self._failed[model_id] = str(error).split("(", 1)[-1].split(")", 1)[0][:200]
        loaded = self._models.pop(model_id, None)
        if loaded is not None:
            loaded.close()

    async def predict(self, model_id: str, uri: str, texts: Sequence[str], pairs: Sequence[str] | None = None,
                      quantize: str | None = None) -> list[dict[str, Any]]:
        """One ``{"label", "score", "probabilities"}`` per input, in order."""
        probs, labels = await self.predict_proba(model_id, uri, list(texts),
                                                 list(pairs) if pairs is not None else None, quantize)
        if len(probs) != len(texts) or (len(probs) and len(probs[0]) != len(labels)):
            raise Unprocessable("the model returned an unexpected number of scores", code="invalid_artifact")
        if self.metrics is not None:
            self.metrics.predict_rows.inc(len(texts))
        out = []
        for values in (probs.tolist() if hasattr(probs, "tolist") else [list(row) for row in probs]):
            best = max(range(len(values)), key=values.__getitem__)
            out.append({"label": labels[best], "score": values[best],
                        "probabilities": dict(zip(labels, values, strict=True))})
        return out

    def evict(self, model_id: str) -> None:
        """Forget a model (deleted): its loaded copy and every cached row of it."""
        for key in [key for key in list(self._refs.keys()) if key[1] == model_id]:
            self._refs.pop(key, None)
        for key in [key for key in self._models if key == model_id or key.startswith(f"{model_id}#")]:
            self._models.pop(key).close()

    def close(self) -> None:
        for loaded in [*self._models.values(), *self._teachers.values()]:
            loaded.close()
        self._models.clear()
        self._teachers.clear()
        self._refs.clear()
