"""The small-data table of benchmarks/README.md from ``quality.py`` result files (issue 23).

Rows: the teacher; the no-teacher baseline (the same student kind trained with ``ce`` on the labelled
rows, ``quality.py --baseline``); each (student, method) run of each file, labelled by its file's
augmentation. Test accuracy as mean ± standard error over the seeds found (files of one setting run
one seed each are merged by their tag without the ``-sN`` suffix); % of the teacher; validation mean.

Usage:  python benchmarks/summarize_small_data.py benchmarks/out/quality-sst2-n7000-aug*-s*.json
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def _mean_se(values: list[float]) -> str:
    a = np.asarray(values) * 100
    se = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{a.mean():.2f} ± {se:.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def main(paths: list[str]) -> None:
    runs: dict[tuple, list[dict]] = defaultdict(list)
    teacher = None
    for path in sorted(paths):
        result = json.loads(Path(path).read_text())
        teacher = teacher or result["teacher"]
        setting = (result["dataset"], result["transfer_rows"], result["augment"], result.get("augmented_rows", 0))
        for kind, r in result["students"].items():
            for method, items in r["runs"].items():
                runs[(*setting, kind, method)] += items
    t = teacher["test"]["accuracy"] * 100
    print(f"teacher: test {t:.2f}%, validation {teacher['validation']['accuracy'] * 100:.2f}%\n")
    print("| rows | variants | student | method | seeds | test acc % (± SE) | % of teacher | val acc % "
          "| best/run epochs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (dataset, rows, augment, aug_rows, kind, method), items in sorted(runs.items(), key=lambda x: str(x[0])):
        test = [x["test"]["accuracy"] for x in items]
        val = np.mean([x["validation"] for x in items]) * 100
        what = "ce on the labelled rows (no teacher)" if method == "ce_labelled" else method
        variants = "-" if method == "ce_labelled" else (f"{augment}/row ({aug_rows:,})" if augment else "0")
        rows_here = items[0].get("train_rows", rows) if method == "ce_labelled" else rows
        epochs = ", ".join(f"{x['best_epoch']}/{x['epochs_run']}" for x in items)
        print(f"| {dataset} {rows_here:,} | {variants} | {kind} | {what} | {len(items)} | {_mean_se(test)} | "
              f"{np.mean(test) * 100 / t * 100:.1f}% | {val:.2f} | {epochs} |")
        per_seed = " / ".join(f"{x * 100:.2f}" for x in test)
        print(f"|  |  |  | per seed (test) |  | {per_seed} |  |  |  |", file=sys.stderr)


if __name__ == "__main__":
    main([p for p in sys.argv[1:] if re.search(r"\.json$", p)])
