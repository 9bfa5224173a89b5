"""Augmented transfer sets: seeded variants of training rows, for the teacher to label.

A small transfer set starves the student of teacher signal; Tang et al. (2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks") widen it with cheap rule-based
variants that the teacher then scores. Per variant, with probability ``p_ngram`` a random
n-gram (n in 1..5) of the words is kept; otherwise every word is independently masked
(``p_mask``, the teacher tokenizer's mask token) or dropped (``p_drop``), and the words are
shuffled within small windows (``window``). No external model is needed.

Each variant is seeded by ``(seed, source row, variant)``, so the set is the same whatever the
order of generation; it is cached as JSON keyed by the dataset hash, the spec and the source
rows, and its teacher features are cached beside the teacher's other features (same cache).
Only training rows are ever augmented: the job passes its fit rows, never validation or test.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lelp.progress import CancelCheck, Progress, ProgressCallback, check_cancelled, report

AUGMENT_VERSION = 1


@dataclass(frozen=True)
class AugmentSpec:
    variants: int  # per source row
    p_mask: float = 0.1
    p_drop: float = 0.1
    p_ngram: float = 0.25
    window: int = 3
    mask_token: str = "[MASK]"
    seed: int = 0


@dataclass
class AugmentedSet:
    texts: list[str]
    text_pairs: list[str] | None
    source_rows: np.ndarray  # the training row each variant came from
    key: str  # dataset hash of the set (cache key of its teacher features)


def _variant(words: list[str], spec: AugmentSpec, rng: np.random.Generator) -> list[str]:
    if len(words) > 1 and rng.random() < spec.p_ngram:
        n = int(rng.integers(1, min(5, len(words)) + 1))
        start = int(rng.integers(0, len(words) - n + 1))
        return words[start:start + n]
    out, positions = [], []
    for i, word in enumerate(words):
        r = rng.random()
        if r < spec.p_mask:
            out.append(spec.mask_token)
        elif r < spec.p_mask + spec.p_drop:
            continue
        else:
            out.append(word)
        positions.append(i + rng.uniform(0, spec.window))  # a local shuffle: sort by jittered index
    order = np.argsort(np.asarray(positions), kind="stable")
    shuffled = [out[j] for j in order]
    return shuffled or words[:1]


def augment_text(text: str, spec: AugmentSpec, row: int, variant: int) -> str:
    rng = np.random.default_rng([spec.seed, row, variant, AUGMENT_VERSION])
    return " ".join(_variant(text.split(), spec, rng))


def augment_rows(texts: Sequence[str], text_pairs: Sequence[str] | None, rows: np.ndarray, spec: AugmentSpec, *,
                 dataset_sha256: str, cache_dir: str | Path | None = None,
                 progress: ProgressCallback | None = None, should_cancel: CancelCheck | None = None
                 ) -> AugmentedSet:
    """``spec.variants`` variants of each row in ``rows`` (source order), cached when ``cache_dir`` is set."""
    rows = np.asarray(rows, dtype=np.int64)
    digest = hashlib.sha256(json.dumps([dataset_sha256, asdict(spec), AUGMENT_VERSION]).encode())
    digest.update(rows.tobytes())
    key = "augment-" + digest.hexdigest()
    cache = Path(cache_dir) / "augment" / f"{key}.json" if cache_dir is not None else None
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        return AugmentedSet(stored["texts"], stored["text_pairs"], np.asarray(stored["source_rows"], np.int64), key)
    out_texts, out_pairs, sources = [], [] if text_pairs is not None else None, []
    for done, row in enumerate(rows.tolist()):
        if done % 1000 == 0:
            check_cancelled(should_cancel)
            report(progress, Progress(stage="augment", step=done, total_steps=len(rows),
                                      message=f"{spec.variants} variants per row"))
        for v in range(spec.variants):
            out_texts.append(augment_text(texts[row], spec, row, v))
            if out_pairs is not None:
                out_pairs.append(augment_text(text_pairs[row], spec, row, spec.variants + v))
            sources.append(row)
    result = AugmentedSet(out_texts, out_pairs, np.asarray(sources, dtype=np.int64), key)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"texts": out_texts, "text_pairs": out_pairs, "source_rows": sources}))
        os.replace(tmp, cache)
    return result
