"""One table over every ``benchmarks/out/quality-*.json``: each method's paired difference to kd.

    python benchmarks/summarize_quality.py

A cell is ``mean ± SE`` of (method - kd) test accuracy in points over the same seeds; ``*``
marks a difference larger than two standard errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
COLUMNS = ("ce", "lelp", "random_subclass", "uniform_subclass", "kmeans_subclass")


def cell(method: dict, kd: np.ndarray) -> str:
    diff = (np.asarray(method["test_accuracy"]) - kd) * 100
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    mark = "*" if abs(diff.mean()) > 2 * se else ""
    return f"{diff.mean():+.2f} ± {se:.2f}{mark}"


def main() -> None:
    rows = []
    for file in sorted(OUT.glob("quality-*.json")):
        r = json.loads(file.read_text())
        kd = np.asarray(r["methods"]["kd"]["test_accuracy"])
        epochs = f" · {r['epochs']} epochs" if r.get("epochs") else ""
        setting = f"{r['dataset']} · {r['student']} · α={r['alpha']:g} · {r['transfer_rows']:,} rows{epochs}"
        rows.append(f"| {setting} | {r['teacher']['test']['accuracy'] * 100:.2f} | {kd.mean() * 100:.2f} | "
                    + " | ".join(cell(r["methods"][m], kd) if m in r["methods"] else "—" for m in COLUMNS) + " |")
    print("| setting | teacher | kd | " + " | ".join(f"{m} − kd" for m in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
