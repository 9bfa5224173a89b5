"""CPU throughput of saved student artifacts against their teacher, timed in alternation.

``quality.py`` times the teacher once at the start of a run and each student after its training,
minutes apart; on a shared machine the load changes in between. This script times them in turns
(teacher, every student, teacher, ...) in one process, same torch threads, same test sentences,
so each ratio compares measurements taken seconds apart.

Usage:  python benchmarks/speed_check.py --teacher benchmarks/out/teachers/sst2-minilm \\
            benchmarks/out/artifacts/sst2-n60000-aug0-cnn-s1-static benchmarks/out/artifacts/...-cnn
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lelp.artifacts import HFClassifierPredictor, load_student, read_manifest  # noqa: E402
from lelp.data.datasets import read_table  # noqa: E402
from lelp.evaluate import sentences_per_second  # noqa: E402
from lelp.teacher.loading import load_teacher  # noqa: E402

DATA = Path(os.environ.get("LELP_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("students", nargs="+")
    parser.add_argument("--texts", default=str(DATA / "sst2_test.csv"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = read_table(args.texts).texts
    teacher = load_teacher(args.teacher)
    runners = {"teacher": (HFClassifierPredictor(teacher.model, teacher.tokenizer, list(teacher.info.labels),
                                                 max_length=128).predict_proba, 512, 10.0)}
    for path in args.students:
        runners[f"{read_manifest(path)['kind']} ({Path(path).name})"] = (load_student(path).predict_proba, 2048, 5.0)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (fn, rows, seconds) in runners.items():
            rates[name].append(sentences_per_second(fn, texts, max_rows=rows, max_seconds=seconds))
    t = np.asarray(rates["teacher"])
    print(f"{args.rounds} rounds, {args.threads} torch thread(s), {len(texts)} sentences of {Path(args.texts).name}\n")
    print("| model | sentences/s per round | x teacher per round (same round) | x teacher (median) |")
    print("|---|---|---|---|")
    for name, r in rates.items():
        ratio = np.asarray(r) / t
        print(f"| {name} | {', '.join(f'{x:,.0f}' for x in r)} | {', '.join(f'{x:.0f}x' for x in ratio)} | "
              f"{np.median(ratio):.0f}x |")


if __name__ == "__main__":
    main()
