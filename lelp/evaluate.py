"""Quality and cost of a classifier: accuracy, macro-F1, agreement, size, CPU speed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
    """Accuracy and macro-F1 over the labelled rows (label -1 rows are skipped)."""
    from sklearn.metrics import f1_score

    labels = np.asarray(labels)
    mask = labels >= 0
    if not mask.any():
        return {"accuracy": None, "macro_f1": None, "rows": 0}
    y, p = labels[mask], np.asarray(predictions)[mask]
    return {"accuracy": float((y == p).mean()),
            "macro_f1": float(f1_score(y, p, labels=list(range(num_classes)), average="macro", zero_division=0)),
            "rows": int(mask.sum())}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean()) if len(a) else 0.0


def directory_size(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def sentences_per_second(predict: Callable[[Sequence[str], Sequence[str] | None], object], texts: Sequence[str],
                         text_pairs: Sequence[str] | None = None, *, max_rows: int = 2048,
                         max_seconds: float = 10.0) -> float:
    """Throughput of ``predict`` on up to ``max_rows`` rows, after one warm-up call.

    Rows are fed in slices of 256 and the clock stops at ``max_seconds``, so a slow
    teacher costs bounded time.
    """
    rows = list(texts[:max_rows])
    pairs = list(text_pairs[:max_rows]) if text_pairs is not None else None
    if not rows:
        return 0.0
    predict(rows[:8], pairs[:8] if pairs is not None else None)
    done, start = 0, time.perf_counter()
    for i in range(0, len(rows), 256):
        predict(rows[i:i + 256], pairs[i:i + 256] if pairs is not None else None)
        done += len(rows[i:i + 256])
        if time.perf_counter() - start > max_seconds:
            break
    return done / max(time.perf_counter() - start, 1e-9)


SPEED_ROUNDS = 3
SPEED_THREADS = 1  # per CPU core: see alternating_speeds


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch intra-op threads (None: as they are), then restore them."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def alternating_speeds(runners: dict[str, tuple[Callable, int, float]], texts: Sequence[str],
                       text_pairs: Sequence[str] | None = None, *, rounds: int = SPEED_ROUNDS,
                       reference: str = "teacher", threads: int | None = SPEED_THREADS) -> dict:
    """Sentences/s of each ``name: (predict, max_rows, max_seconds)``, timed in turns (every runner once
    per round, ``rounds`` rounds), and each one's speed-up over ``reference`` in the same round.

    Timed minutes apart, on a shared machine a ratio says more about the load than about the models
    (a job's teacher and student once came out at 55x, and 144x in alternation); turns seconds apart
    cancel most of it (as ``benchmarks/speed_check.py``). The medians are what a report quotes.
    Each model runs on ``threads`` torch threads (one by default: throughput per CPU core, as
    ``benchmarks/speed_check.py`` and the issue's own comparisons time it). On all of a machine's
    cores the ratio depends on how many there are and how busy they are: a teacher's matmuls use
    every core, a small student's per-row work hardly gains from a second one.
    """
    rates: dict[str, list[float]] = {name: [] for name in runners}
    with torch_threads(threads):
        for _ in range(rounds):
            for name, (predict, max_rows, max_seconds) in runners.items():
                rates[name].append(sentences_per_second(predict, texts, text_pairs, max_rows=max_rows,
                                                        max_seconds=max_seconds))
    ref = np.asarray(rates[reference])
    out = {"rounds": rounds, "reference": reference, "threads": threads, "models": {}}
    for name, r in rates.items():
        ratio = np.asarray(r) / np.maximum(ref, 1e-9)
        out["models"][name] = {"sentences_per_second": [round(x, 1) for x in r],
                               "median_sentences_per_second": float(np.median(r)),
                               "x_reference": [round(float(x), 1) for x in ratio],
                               "median_x_reference": float(np.median(ratio))}
    return out


def keeps_line(metrics: dict) -> str | None:
    """The report's headline as one sentence (``lelp.report.analysis.headline_text``): only the figures the
    job measured, never a blank one."""
    from lelp.report.analysis import headline_text

    return headline_text(metrics) or None
