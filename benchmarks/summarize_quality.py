"""The accuracy-vs-speed table of benchmarks/README.md from every ``benchmarks/out/quality-*.json``.

    python benchmarks/summarize_quality.py [benchmarks/out/quality-X.json ...]   (default: all of them)

One row per setting x student kind x method: test accuracy (mean ± SE over seeds), its share of
the teacher's, the paired difference to kd on the same seeds (``*`` = beyond 2 SE), validation
accuracy (what every choice was made on), CPU sentences/s, the ratio to the teacher measured in
the same run, and the artifact's size on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def mean_se(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float) * 100
    return a.mean(), (a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan"))


def paired(runs: list[dict], kd: list[dict]) -> str:
    n = min(len(runs), len(kd))
    if runs is kd or n < 2:
        return "—"
    d = np.asarray([runs[i]["test"]["accuracy"] - kd[i]["test"]["accuracy"] for i in range(n)]) * 100
    se = d.std(ddof=1) / np.sqrt(n)
    return f"{d.mean():+.2f} ± {se:.2f}" + ("*" if abs(d.mean()) > 2 * se and se > 0 else "")


def setting_name(r: dict) -> str:
    aug = f" + {r['augment']} variants/row ({r['augmented_rows']:,} rows)" if r["augment"] else ""
    cap = f", at most {r['max_epochs']} epochs" if r.get("max_epochs") else ""
    opts = "".join(f", {k} options {json.dumps(v)}" for k, v in (r.get("student_options") or {}).items())
    lrs = "".join(f", {k} lr {v:g}" for k, v in (r.get("learning_rates") or {}).items())
    return f"{r['dataset']} · {r['transfer_rows']:,} transfer rows{aug}{cap}{opts}{lrs}"


def table(results: list[dict]) -> str:
    lines = ["| setting | student | method | test acc % (± SE) | % of teacher | Δ vs kd | val acc % | epochs "
             "(best/run) | sentences/s | x teacher | MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["teacher"]
        t_acc = t["test"]["accuracy"] * 100
        lines.append(f"| {setting_name(r)} | **teacher** (MiniLM-L6) | — | {t_acc:.2f} | 100% | — | "
                     f"{t['validation']['accuracy'] * 100:.2f} | — | {t['speed']['sentences_per_second']:,.0f} | 1x | "
                     f"{t['speed']['size_bytes'] / 1e6:.0f} |")
        for kind, s in r["students"].items():
            sp = s.get("speed") or {}
            kd = s["runs"].get("kd", [])
            for method, runs in s["runs"].items():
                if method == "auto" and len(s["runs"]) <= 2:  # a pool of one method: nothing chosen
                    continue
                m, se = mean_se([x["test"]["accuracy"] for x in runs])
                val = np.mean([x["validation"] for x in runs]) * 100
                best, run = np.mean([x["best_epoch"] for x in runs]), np.mean([x["epochs_run"] for x in runs])
                epochs = f"{best:.0f}/{run:.0f}"
                name = method
                if method == "auto":
                    picks = [x["chosen"] for x in runs]
                    name = "auto (" + ", ".join(f"{p}×{picks.count(p)}" for p in dict.fromkeys(picks)) + ")"
                lines.append(f"| | {kind} | {name} | {m:.2f} ± {se:.2f} | {m / t_acc * 100:.1f}% | "
                             f"{paired(runs, kd)} | {val:.2f} | {epochs} | "
                             f"{sp.get('sentences_per_second', float('nan')):,.0f} | "
                             f"{sp.get('teacher_ratio', float('nan')):.0f}x | {sp.get('size_bytes', 0) / 1e6:.1f} |")
    return "\n".join(lines)


def merge(results: list[dict]) -> list[dict]:
    """Files of one setting (seeds run in parallel processes, ``--seed-start``) as one: runs
    concatenated in seed order; teacher and student speeds from the file with the lowest first seed."""
    merged: dict = {}
    for r in sorted(results, key=lambda r: r.get("seed_start", 1)):
        key = setting_name(r)
        if key not in merged:
            merged[key] = json.loads(json.dumps(r))
            continue
        into = merged[key]
        for kind, st in r["students"].items():
            if kind not in into["students"]:
                into["students"][kind] = st
                continue
            for method, runs in st["runs"].items():
                into["students"][kind]["runs"].setdefault(method, []).extend(runs)
            into["students"][kind]["speed"] = into["students"][kind].get("speed") or st.get("speed")
    return list(merged.values())


def main() -> None:
    import sys

    files = [Path(a) for a in sys.argv[1:]] or sorted(OUT.glob("quality-*.json"))
    results = [json.loads(f.read_text()) for f in files]
    results = merge([r for r in results if "students" in r])
    results.sort(key=lambda r: (r["dataset"] != "sst2", r["dataset"], r["transfer_rows"], r["augment"]))
    print(table(results))
    teachers = {r["dataset"]: r.get("teacher_training") for r in results if r.get("teacher_training")}
    for dataset, tt in teachers.items():
        hist = ", ".join(f"{h['epoch']}: {h['val_score'] * 100:.1f}" for h in tt.get("history", []))
        print(f"\n{dataset} teacher (make-teacher defaults): held-out {tt['held_out_accuracy'] * 100:.2f}% "
              f"on {tt['held_out_rows']} rows; held-out accuracy by epoch {hist}; best epoch {tt['best_epoch']}")


if __name__ == "__main__":
    main()
