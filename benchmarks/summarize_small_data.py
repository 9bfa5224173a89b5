"""The small-data table of benchmarks/README.md from ``quality.py`` result files (issue 23).

Rows: the teacher; the no-teacher baseline (the same student kind trained with ``ce`` on the labelled
rows, ``quality.py --baseline``); each (student, method) run of each file, labelled by its file's
augmentation. Test accuracy as mean ± standard error over the seeds found (files of one setting run
one seed each are merged by their tag without the ``-sN`` suffix); % of the teacher; validation mean.

Usage:  python benchmarks/summarize_small_data.py benchmarks/out/quality-sst2-n7000-aug*-s*.json
Paired differences follow the table: each pair of teacher-guided settings (same dataset, size, student, method)
over the seeds both ran, validation (what a choice is made on) and test.
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
        setting = (result["dataset"], result["transfer_rows"], result["augment"], result.get("augmented_rows", 0),
                   json.dumps(result.get("taus") or {}, sort_keys=True))
        for kind, r in result["students"].items():
            for method, items in r["runs"].items():
                runs[(*setting, kind, method)] += [{**x, "seed": result.get("seed_start", 1) + i}
                                                   for i, x in enumerate(items)]
    t = teacher["test"]["accuracy"] * 100
    print(f"teacher: test {t:.2f}%, validation {teacher['validation']['accuracy'] * 100:.2f}%\n")
    print("| rows | variants | student | method | seeds | test acc % (± SE) | % of teacher | val acc % "
          "| best/run epochs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(runs, key=_order):
        (dataset, rows, augment, aug_rows, taus, kind, method), items = key, runs[key]
        test = [x["test"]["accuracy"] for x in items]
        val = np.mean([x["validation"] for x in items]) * 100
        what = "ce on the labelled rows (no teacher)" if method == "ce_labelled" else method
        tau = json.loads(taus).get(kind)
        if method != "ce_labelled" and tau is not None:  # a screened kd temperature (--taus)
            what += f" (tau {tau})"
        variants = "-" if method == "ce_labelled" else (f"{augment}/row ({aug_rows:,})" if augment else "0")
        rows_here = items[0].get("train_rows", rows) if method == "ce_labelled" else rows
        epochs = ", ".join(f"{x['best_epoch']}/{x['epochs_run']}" for x in items)
        print(f"| {dataset} {rows_here:,} | {variants} | {kind} | {what} | {len(items)} | {_mean_se(test)} | "
              f"{np.mean(test) * 100 / t * 100:.1f}% | {val:.2f} | {epochs} |")
        per_seed = " / ".join(f"{x * 100:.2f}" for x in test)
        print(f"|  |  |  | per seed (test) |  | {per_seed} |  |  |  |", file=sys.stderr)
    paired(runs)


def _order(key: tuple) -> tuple:
    return (*key[:4], key[4] != "{}", *key[4:])  # the default temperature first


def _label(key: tuple) -> str:
    _, _, augment, _, taus, kind, method = key
    tau = json.loads(taus).get(kind)
    return f"{kind} {method} +{augment}/row" + (f" tau {tau}" if tau is not None else "")


def paired(runs: dict[tuple, list[dict]]) -> None:
    """Paired differences (mean ± SE over the seeds both ran) between the teacher-guided settings of one
    dataset, size, student and method: what a choice between them is made on (validation), and test."""
    keys = [k for k in sorted(runs, key=_order) if k[-1] != "ce_labelled"]
    lines = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if (a[0], a[1], a[5], a[6]) != (b[0], b[1], b[5], b[6]):
                continue
            sa, sb = ({x["seed"]: x for x in runs[k]} for k in (a, b))
            seeds = sorted(set(sa) & set(sb))
            if len(seeds) < 2:
                continue
            diff = {split: np.asarray([(_score(sb[s], split) - _score(sa[s], split)) * 100 for s in seeds])
                    for split in ("validation", "test")}
            text = ", ".join(f"{split} {d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f} "
                             f"({' / '.join(f'{v:+.2f}' for v in d)})" for split, d in diff.items())
            lines.append(f"- {_label(b)} minus {_label(a)}, seeds {', '.join(map(str, seeds))}: {text}")
    if lines:
        print("\nPaired differences (points; mean ± SE over seeds, then per seed):")
        print("\n".join(lines))


def _score(run: dict, split: str) -> float:
    return run["validation"] if split == "validation" else run["test"]["accuracy"]


if __name__ == "__main__":
    main([p for p in sys.argv[1:] if re.search(r"\.json$", p)])
