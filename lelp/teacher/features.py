"""Teacher features (embedding + logits) and frozen-encoder sentence vectors, cached on disk.

Both are one pass of a frozen transformer over a dataset, so they share one batched loop
(tokenize once, sort by length, pad each batch only to its own longest row: most of the
speed-up over fixed padding) and one cache (arrays written to ``.npy`` memmaps as batches
finish, published by an atomic rename so that a killed job never leaves a half cache that
looks complete). A second job on the same teacher, data and max length skips the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lelp.devices import distributed
from lelp.devices.cuda import TEACHER, choose_precision, enable_tf32, fit_batch_size, to_device
from lelp.devices.resolve import resolve_device
from lelp.errors import ConfigError, DataError
from lelp.progress import CancelCheck, Progress, ProgressCallback, check_cancelled, report
from lelp.teacher.loading import (
    Teacher,
    config_hidden_size,
    directory_sha256,
    find_weights,
    load_tokenizer,
    read_model_config,
    safe_from_pretrained,
)

CACHE_FORMAT = 1
ArraySpec = dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype)
BatchFn = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class TeacherFeatures:
    embeddings: np.ndarray  # (n, D) float16, memory-mapped from disk
    logits: np.ndarray  # (n, C) float32


# --------------------------------------------------------------------------- cache


def texts_sha256(texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> str:
    """Hash of the rows, length-prefixed so that no two different datasets collide by joining."""
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        for part in (text, None if text_pairs is None else text_pairs[i]):
            raw = b"\xff" if part is None else part.encode("utf-8")
            digest.update(len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()


def cache_key(kind: str, model_sha256: str, data_sha256: str, n_rows: int, max_length: int) -> str:
    parts = [f"format={CACHE_FORMAT}", kind, model_sha256, data_sha256, str(n_rows), str(max_length)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _open_complete(path: Path, spec: ArraySpec) -> dict[str, np.ndarray] | None:
    """The cached arrays read-only, or None when absent or not what this call would write."""
    if not path.is_dir():
        return None
    try:
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in spec}
    except (OSError, ValueError):
        return None
    if all(arrays[n].shape == shape and arrays[n].dtype == np.dtype(dt) for n, (shape, dt) in spec.items()):
        return arrays
    return None


ABANDONED_AFTER_S = 3600.0


def remove_abandoned_work(root: Path, key: str, older_than_s: float = ABANDONED_AFTER_S) -> int:
    """Delete half-written entries for ``key`` left by a killed process (none written to for an hour).

    A kill during extraction leaves ``.tmp-<key>-*`` behind (the ``finally`` never ran); on a
    real dataset that is gigabytes. A live writer touches its files every batch, so an hour of
    silence means nobody owns it.
    """
    removed, now = 0, time.time()
    for work in root.glob(f".tmp-{key}-*"):
        newest = max((f.stat().st_mtime for f in work.iterdir()), default=work.stat().st_mtime)
        if now - newest > older_than_s:
            shutil.rmtree(work, ignore_errors=True)
            removed += 1
    return removed


def cached_arrays(
    cache_dir: str | Path | None, key: str, spec: ArraySpec, fill: Callable[[dict[str, np.ndarray]], None]
) -> dict[str, np.ndarray]:
    """Return the arrays under ``cache_dir/key``, calling ``fill`` to write them when missing.

    ``fill`` receives writable memmaps and writes rows as it goes, so memory stays at one
    batch. Without ``cache_dir`` the arrays still live on disk, in a temporary directory that
    is removed at once: on POSIX the open memory maps keep the data until they are dropped.
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="lelp-features-", ignore_cleanup_errors=True) as tmp:
            return cached_arrays(tmp, key, spec, fill)
    root = Path(cache_dir)
    final = root / key
    hit = _open_complete(final, spec)
    if hit is not None:
        return hit
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned_work(root, key)
    work = root / f".tmp-{key}-{uuid.uuid4().hex}"
    work.mkdir()
    try:
        arrays = {
            name: np.lib.format.open_memmap(work / f"{name}.npy", mode="w+", dtype=dt, shape=shape)
            for name, (shape, dt) in spec.items()
        }
        fill(arrays)
        for array in arrays.values():
            array.flush()
        del arrays
        (work / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "arrays": list(spec)}))
        if final.exists():  # a stale or damaged entry (a good one returned above): replace it
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(work, final)
        except OSError:
            if _open_complete(final, spec) is None:  # another process won the race with a good copy
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = _open_complete(final, spec)
    if result is None:
        raise RuntimeError(f"feature cache {final} could not be read back after writing")
    return result


def sharded_arrays(cache_dir: str | Path, key: str, spec: ArraySpec,
                   fill: Callable[[dict[str, np.ndarray], np.ndarray], None], copy_rows: int = 65_536
                   ) -> dict[str, np.ndarray]:
    """``cached_arrays`` split over the ranks of a DDP run: each rank fills its rows (every
    world-th, ``distributed.shard_rows``) into files of its own, rank 0 gathers them into the cache
    entry and publishes it, every rank then reads the entry. ``cache_dir`` is shared by the ranks."""
    root = Path(cache_dir)
    hit = _open_complete(root / key, spec)
    if distributed.sum_floats(float(hit is None))[0] == 0:
        return hit
    n, rank, world = next(iter(spec.values()))[0][0], distributed.rank(), distributed.world_size()
    shards = root / f".shards-{key}"
    shards.mkdir(parents=True, exist_ok=True)
    rows = distributed.shard_rows(n)
    mine = {name: np.lib.format.open_memmap(shards / f"{name}-{rank}.npy", mode="w+", dtype=dt,
                                            shape=(len(rows), *shape[1:])) for name, (shape, dt) in spec.items()}
    fill(mine, rows)
    for array in mine.values():
        array.flush()
    del mine
    distributed.barrier()  # every shard is written
    if distributed.is_main():
        def gather(arrays: dict[str, np.ndarray]) -> None:
            for r in range(world):
                their = distributed.shard_rows(n, r, world)
                for name in spec:
                    part = np.load(shards / f"{name}-{r}.npy", mmap_mode="r")
                    for a in range(0, len(their), copy_rows):  # bounded memory on a million rows
                        arrays[name][their[a:a + copy_rows]] = part[a:a + copy_rows]

        try:
            cached_arrays(root, key, spec, gather)
        finally:
            shutil.rmtree(shards, ignore_errors=True)
    distributed.barrier()  # the entry is published
    result = _open_complete(root / key, spec)
    if result is None:
        raise RuntimeError(f"feature cache {root / key} could not be read after the ranks wrote it")
    return result


# --------------------------------------------------------------------------- batched loop


@dataclass
class TokenizedRows:
    """Every row's token ids, unpadded, packed into flat int32 arrays per tokenizer output.

    About 4 bytes per token per key, against ~36 for Python lists: a million rows fit.
    """

    flat: dict[str, np.ndarray]  # key -> (total tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64: row i is flat[key][offsets[i]:offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, rows: np.ndarray) -> dict[str, list[list[int]]]:
        """The chosen rows, unpadded, in the form ``tokenizer.pad`` takes."""
        bounds = [(int(self.offsets[i]), int(self.offsets[i + 1])) for i in rows]
        return {key: [flat[a:b].tolist() for a, b in bounds] for key, flat in self.flat.items()}


def check_inputs(texts: Sequence[str], text_pairs: Sequence[str] | None, batch_size: int) -> None:
    """Refuse caller mistakes before any hashing or model work."""
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise DataError(f"texts ({len(texts)}) and text_pairs ({len(text_pairs)}) must have the same length")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}", param="batch_size")


def tokenize_rows(
    tokenizer: Any, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int, chunk_rows: int = 4096
) -> TokenizedRows:
    """Tokenize every row once, truncated but unpadded: lengths drive the batching."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < max_length:  # longer inputs would overflow position ids
        max_length = limit
    parts: dict[str, list[np.ndarray]] = {}
    lengths: list[int] = []
    for start in range(0, len(texts), chunk_rows):
        stop = start + chunk_rows
        encoded = tokenizer(
            list(texts[start:stop]),
            list(text_pairs[start:stop]) if text_pairs is not None else None,
            truncation=True,
            max_length=max_length,
            padding=False,
        )
        for key in encoded.keys():
            parts.setdefault(key, []).append(np.fromiter(chain.from_iterable(encoded[key]), dtype=np.int32))
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenizedRows(flat={k: np.concatenate(v) for k, v in parts.items()}, offsets=offsets)


def run_length_sorted(
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    forward: BatchFn,
    outputs: dict[str, np.ndarray],
    *,
    max_length: int,
    batch_size: int,
    device: torch.device,
    stage: str = "extract",
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> None:
    """Run ``forward`` over length-sorted, dynamically padded batches; write rows in input order.

    ``forward`` maps a padded batch (on ``device``) to named tensors of shape (batch, ...),
    one per array in ``outputs``.
    """
    check_inputs(texts, text_pairs, batch_size)
    n = len(texts)
    if n == 0:
        return
    tokens = tokenize_rows(tokenizer, texts, text_pairs, max_length)
    order = np.argsort(-tokens.lengths, kind="stable")  # longest first: a memory error shows at once
    done = 0
    enable_tf32(device)
    # bf16 (fp16) autocast on CUDA; fp32 on the CPU, where autocast is slower for these models
    with torch.inference_mode(), choose_precision(device, TEACHER).autocast(device):
        if device.type == "cuda":  # the longest rows come first: the batch that fits them fits all
            def attempt(size: int) -> None:
                batch = tokenizer.pad(tokens.batch(order[:size]), return_tensors="pt")
                forward({k: to_device(v, device) for k, v in batch.items()})

            batch_size = fit_batch_size(attempt, batch_size)
        for start in range(0, n, batch_size):
            check_cancelled(should_cancel)
            rows = order[start : start + batch_size]
            batch = tokenizer.pad(tokens.batch(rows), return_tensors="pt")
            result = forward({k: to_device(v, device) for k, v in batch.items()})
            for name, array in outputs.items():
                array[rows] = result[name].float().cpu().numpy().astype(array.dtype, copy=False)
            done += len(rows)
            report(progress, Progress(stage=stage, step=done, total_steps=n))


def _model_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """The model's own device, or ``device`` after moving the model there."""
    if device is None:
        return next(model.parameters()).device
    target = resolve_device(device)
    model.to(target)
    return target


# --------------------------------------------------------------------------- teacher features



def _embeddings_and_logits(teacher, model):  # noqa: ANN001, ANN202
    """A batch -> {"embeddings": the input of the teacher's head, "logits"} (the head's input read by a hook)."""

    def forward(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        captured: list[torch.Tensor] = []
        hook = teacher.head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            logits = model(**batch).logits
        finally:
            hook.remove()
        return {"embeddings": captured[-1], "logits": logits}

    return forward

def extract_teacher_features(
    teacher: Teacher,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    dataset_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    device: str | torch.device | None = None,
) -> TeacherFeatures:
    """The teacher's embeddings (input of its final Linear, fp16) and logits (fp32), row-aligned.

    The embedding is captured by a forward pre-hook on ``teacher.head``, so no model family is
    special-cased. Cached by teacher hash + dataset hash + max length.
    """
    check_inputs(texts, text_pairs, batch_size)
    n = len(texts)
    model = teacher.model
    run_device = _model_device(model, device)
    spec: ArraySpec = {
        "embeddings": ((n, teacher.head.in_features), "float16"),
        "logits": ((n, teacher.info.num_labels), "float32"),
    }
    data_sha = dataset_sha256 or texts_sha256(texts, text_pairs)
    key = cache_key("teacher", teacher.info.sha256, data_sha, n, max_length)

    forward = _embeddings_and_logits(teacher, model)

    def fill(arrays: dict[str, np.ndarray], rows: np.ndarray | None = None) -> None:
        sub_texts, sub_pairs = texts, text_pairs
        if rows is not None:  # one rank's shard
            sub_texts = [texts[i] for i in rows]
            sub_pairs = [text_pairs[i] for i in rows] if text_pairs is not None else None
        run_length_sorted(
            teacher.tokenizer, sub_texts, sub_pairs, forward, arrays, max_length=max_length, batch_size=batch_size,
            device=run_device, progress=progress, should_cancel=should_cancel,
        )

    if distributed.world_size() > 1 and cache_dir is not None:
        arrays = sharded_arrays(cache_dir, key, spec, fill)
    else:
        arrays = cached_arrays(cache_dir, key, spec, fill)
    return TeacherFeatures(embeddings=arrays["embeddings"], logits=arrays["logits"])


def extend_teacher_features(
    teacher: Teacher,
    base: TeacherFeatures,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    dataset_sha256: str,
    max_length: int = 128,
    batch_size: int = 64,
    block_rows: int = 8192,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> TeacherFeatures:
    """``base``'s rows followed by the teacher's features of ``texts``, as one cached pair of arrays.

    For augmented transfer sets (``lelp.data.augment``): ``texts`` may be a lazy sequence, read
    ``block_rows`` rows at a time (each block tokenised, length-sorted and scored on its own), so
    memory stays at one block whatever the number of rows; ``base`` is copied in blocks too. The
    result is one memmap per array (no concatenated copy in memory). ``dataset_sha256`` must
    identify ``base``'s rows and ``texts`` together (it keys the cache).
    """
    check_inputs(texts, text_pairs, batch_size)
    n_base, n_new = len(base.logits), len(texts)
    model = teacher.model
    run_device = _model_device(model, None)
    spec: ArraySpec = {
        "embeddings": ((n_base + n_new, teacher.head.in_features), "float16"),
        "logits": ((n_base + n_new, teacher.info.num_labels), "float32"),
    }
    key = cache_key("teacher", teacher.info.sha256, dataset_sha256, n_base + n_new, max_length)

    forward = _embeddings_and_logits(teacher, model)

    def fill(arrays: dict[str, np.ndarray]) -> None:
        for start in range(0, n_base, block_rows):
            stop = min(start + block_rows, n_base)
            arrays["embeddings"][start:stop] = base.embeddings[start:stop]
            arrays["logits"][start:stop] = base.logits[start:stop]
        for start in range(0, n_new, block_rows):
            stop = min(start + block_rows, n_new)
            report(progress, Progress(stage="augment", step=start, total_steps=n_new,
                                      message=f"the teacher scores variant rows {start:,}-{stop:,} of {n_new:,}"))
            views = {name: array[n_base + start:n_base + stop] for name, array in arrays.items()}
            run_length_sorted(
                teacher.tokenizer, list(texts[start:stop]),
                list(text_pairs[start:stop]) if text_pairs is not None else None, forward, views,
                max_length=max_length, batch_size=batch_size, device=run_device, stage="augment",
                should_cancel=should_cancel,
            )
        report(progress, Progress(stage="augment", step=n_new, total_steps=n_new))

    arrays = cached_arrays(cache_dir, key, spec, fill)
    return TeacherFeatures(embeddings=arrays["embeddings"], logits=arrays["logits"])


# --------------------------------------------------------------------------- frozen encoder


def encoder_sha256(model_dir: str | Path) -> str:
    """The identity of a frozen encoder directory (config, weights, tokenizer files)."""
    return directory_sha256(model_dir)


def load_encoder(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Any]:
    """A pretrained encoder (``AutoModel``) and its tokenizer, loaded as safely as a teacher."""
    from transformers import AutoModel

    root = Path(model_dir)
    read_model_config(root)  # refuses missing dirs, bad JSON and remote code
    model, _missing = safe_from_pretrained(AutoModel, root, find_weights(root))
    return model.eval().to(resolve_device(device)), load_tokenizer(root)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors where the attention mask is 1 (padding does not count)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def encode_mean_pooled(
    model_dir: str | Path,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    max_length: int = 128,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    dataset_sha256: str | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> np.ndarray:
    """(n, H) float16 mean-pooled sentence vectors of a frozen encoder: the encoder_mlp input.

    The encoder is only loaded on a cache miss.
    """
    check_inputs(texts, text_pairs, batch_size)
    n = len(texts)
    key = cache_key("mean_pooled", encoder_sha256(model_dir), dataset_sha256 or texts_sha256(texts, text_pairs),
                    n, max_length)
    spec: ArraySpec = {"embeddings": ((n, config_hidden_size(read_model_config(model_dir))), "float16")}

    def fill(arrays: dict[str, np.ndarray]) -> None:
        model, tokenizer = load_encoder(model_dir, device)

        def forward(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            hidden_states = model(**batch).last_hidden_state
            return {"embeddings": mean_pool(hidden_states.float(), batch["attention_mask"])}

        run_length_sorted(
            tokenizer, texts, text_pairs, forward, arrays, max_length=max_length, batch_size=batch_size,
            device=resolve_device(device), progress=progress, should_cancel=should_cancel,
        )

    return cached_arrays(cache_dir, key, spec, fill)["embeddings"]
