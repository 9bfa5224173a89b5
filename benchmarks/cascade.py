"""Cascade: share sent to the teacher and throughput for targets of the teacher's accuracy (issue 22).

    python benchmarks/cascade.py --teacher T --train demo/data/sst2_transfer.csv --label-column '' \\
        --test ../shared/data/sst2_test.csv --seeds 0 1 2 [--student cnn] [--method kd] [--max-length 64]

Per seed: one ``distill`` whose evaluation rows are the test split (read once, only to score);
the student's temperature and each target's threshold come from the job's own validation rows
(a held-out 10% of the training rows: with unlabelled transfer data their truth is the
teacher's answer, so a target there is an agreement target). Then, on the test rows, for each
target (97%, 99%, 100% of the teacher's accuracy):

* share deferred, cascade accuracy and its % of the teacher's (labels of the test split);
* throughput as x the teacher's, **measured**: the student on every test row plus the teacher
  on the deferred rows, timed in this process against the teacher on every row (same batches
  of 64, torch threads as set), paired chunk by chunk: on each ``--chunk`` test rows the teacher and
  every target's cascade run one after the other (its deferred rows batched within the chunk), the
  times summed over the chunks (``x_teacher``: the median over ``--rounds`` sweeps; ``x_teacher_best``
  from the best sweep's times); the job's model of it (``speedup``, from the two sentences/s it
  timed in alternation) beside it.

Mean and standard error over the seeds. Each seed's rows are kept in ``OUT/seedN/cascade_rows.json``
(with the load average around its timing) and reused by a later run that names the same seed, so
seeds can run in separate processes and one last call prints the table of all of them.

``--first N --exclude FILE``: the transfer set is the first N rows of ``--train`` (file order) whose
text is not in FILE (the teacher's training rows), written to ``OUT/transfer.csv`` and used unlabelled.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = (0.97, 0.99, 1.0)


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def first_rows_not_in(train: Path, exclude: Path, n: int, out: Path) -> dict:
    """The first ``n`` rows of ``train`` whose text is not a text of ``exclude``, written to ``out``."""
    import csv

    with exclude.open(newline="") as f:
        held = {row["text"] for row in csv.DictReader(f)}
    kept, skipped, last = [], 0, -1
    with train.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if len(kept) == n:
                break
            if row["text"] in held:
                skipped += 1
                continue
            kept.append({"text": row["text"], "label": row.get("label", "")})
            last = i
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(kept)
    tmp.replace(out)  # atomic: a seed running beside this one may be reading the same file
    return {"rows": len(kept), "last_data_row": last, "skipped": skipped}


def run_seed(args, seed: int) -> list[dict]:
    import numpy as np

    from lelp.artifacts import HFClassifierPredictor, load_student
    from lelp.data.datasets import encode_labels, read_table
    from lelp.pipeline import DistillConfig, distill
    from lelp.teacher.loading import load_teacher

    out = args.out / f"seed{seed}"
    saved = out / "cascade_rows.json"
    if saved.is_file() and not args.remeasure:
        return json.loads(saved.read_text())
    started = time.time()
    if not (out / "metrics.json").is_file():
        distill(DistillConfig(teacher_dir=str(args.teacher), train_path=str(args.train), eval_path=str(args.test),
                              validation_path=str(args.validation) if args.validation else None,
                              validation_label_column="label" if args.validation else None,
                              label_column=args.label_column or None, eval_label_column="label",
                              method=args.method, student=args.student, max_length=args.max_length, seed=seed,
                              device="cpu"), out, cache_dir=args.out / "cache")
    metrics = json.loads((out / "metrics.json").read_text())
    test = read_table(args.test, label_column="label")
    texts = test.texts
    student = load_student(out)
    teacher = load_teacher(args.teacher)
    labels = list(teacher.info.labels)
    teacher_predict = HFClassifierPredictor(teacher.model, teacher.tokenizer, labels, max_length=args.max_length)
    truth = np.asarray(encode_labels(test.labels, labels))
    saved_probs = out / "test_probs.npz"
    if saved_probs.is_file():  # a --remeasure: the answers are the same, only the timing is redone
        data = np.load(saved_probs)
        student_probs, teacher_probs = data["student"], data["teacher"]
    else:
        student_probs = student.predict_proba(texts)
        teacher_probs = teacher_predict.predict_proba(texts)
        # kept for benchmarks/cascade_limits.py (what bounds the curve) and a later --remeasure
        np.savez(saved_probs, student=student_probs, teacher=teacher_probs, truth=truth)
    teacher_acc = float((teacher_probs.argmax(1) == truth).mean())
    thresholds = {target: next(t for t in metrics["cascade"]["targets"] if abs(t["target"] - target) < 1e-9)
                  for target in TARGETS}

    def cascade(rows: list[str], threshold: float) -> None:
        probs = student.predict_proba(rows)
        rest = [rows[i] for i in np.flatnonzero(probs.max(1) < threshold)]
        if rest:
            teacher_predict.predict_proba(rest)

    # Paired, chunk by chunk: the teacher and every target's cascade on the same ``--chunk`` test rows,
    # one right after the other (order rotated each chunk), times summed over the chunks. On a loaded
    # machine whose load drifts over minutes, timings seconds apart cancel the drift; whole passes
    # minutes apart measured the load (a cascade deferring 76% of rows once came out at 0.54x).
    load_before = os.getloadavg()[0]
    runners = {"teacher": lambda rows: teacher_predict.predict_proba(rows),
               **{target: (lambda rows, t=thresholds[target]["threshold"]: cascade(rows, t)) for target in TARGETS}}
    timings: dict = {name: [] for name in runners}
    for _ in range(args.rounds):
        spent = dict.fromkeys(runners, 0.0)
        for k, start in enumerate(range(0, len(texts), args.chunk)):
            rows_k = list(texts[start:start + args.chunk])
            names = list(runners)
            for name in names[k % len(names):] + names[:k % len(names)]:
                spent[name] += best_time(lambda fn=runners[name], rows=rows_k: fn(rows), 1)
        for name, value in spent.items():
            timings[name].append(value)
    teacher_s = min(timings["teacher"])
    rows = []
    for target in TARGETS:
        chosen = thresholds[target]
        threshold = chosen["threshold"]
        deferred = np.flatnonzero(student_probs.max(1) < threshold)
        answer = student_probs.argmax(1)
        answer[deferred] = teacher_probs[deferred].argmax(1)
        acc = float((answer == truth).mean())
        ratios = [t / c for t, c in zip(timings["teacher"], timings[target], strict=True)]
        cascade_s = min(timings[target])
        rows.append({"seed": seed, "target": target, "threshold": threshold,
                     "deferred": len(deferred) / len(texts), "accuracy": acc, "teacher_accuracy": teacher_acc,
                     "kept": acc / teacher_acc, "student_kept": float((student_probs.argmax(1) == truth).mean())
                     / teacher_acc, "x_teacher": statistics.median(ratios), "x_teacher_rounds": ratios,
                     "x_teacher_best": teacher_s / cascade_s, "x_teacher_model": chosen.get("speedup"),
                     "validation_deferred": chosen["validation_deferred_fraction"],
                     "teacher_s": teacher_s, "cascade_s": cascade_s, "test_rows": len(texts),
                     "student_x_teacher_job": metrics["student"].get("x_teacher"),
                     "timing": f"paired chunks of {args.chunk}, {args.rounds} sweep(s)"})
        print(json.dumps(rows[-1]), flush=True)
    load = [load_before, os.getloadavg()[0]]
    for row in rows:
        row["load_1min"] = load
        row["seed_wall_s"] = round(time.time() - started, 1)
    saved.write_text(json.dumps(rows, indent=2))
    return rows


def _mean_se(values: list[float]) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {se:.2f}" if abs(mean) < 10 else f"{mean:.1f} ± {se:.1f}"


def _pct(values: list[float]) -> str:
    return _mean_se([100 * v for v in values]).replace(" ± ", "% ± ") + "%"


def table(rows: list[dict]) -> str:
    lines = ["| target (% of teacher) | share to the teacher (validation) | share to the teacher (test) | "
             "cascade accuracy (test) | % of the teacher (test) | throughput, x the teacher (measured) | "
             "x the teacher (job's model) | seeds |", "|---|---|---|---|---|---|---|---|"]
    for target in TARGETS:
        r = [x for x in rows if x["target"] == target]
        lines.append(f"| {target * 100:g}% | {_pct([x['validation_deferred'] for x in r])} | "
                     f"{_pct([x['deferred'] for x in r])} | {_pct([x['accuracy'] for x in r])} | "
                     f"{_pct([x['kept'] for x in r])} | {_mean_se([x['x_teacher'] for x in r])}x | "
                     f"{_mean_se([x['x_teacher_model'] or 0 for x in r])}x | {len(r)} |")
    student = statistics.fmean(x["student_kept"] for x in rows)
    lines.append(f"\nThe student alone keeps {100 * student:.1f}% of the teacher's accuracy "
                 f"(teacher {statistics.fmean(x['teacher_accuracy'] for x in rows):.4f} on test).")
    seeds = sorted({x["seed"] for x in rows})
    first = {s: next(x for x in rows if x["seed"] == s) for s in seeds}
    lines.append("Per seed: " + "; ".join(
        f"seed {s}: teacher {first[s]['teacher_accuracy']:.4f}, student alone {first[s]['student_kept'] * 100:.1f}% "
        f"of it at {first[s].get('student_x_teacher_job') or 0:.1f}x (job), teacher on the test rows "
        f"{first[s].get('teacher_s', 0):.1f} s, load {first[s].get('load_1min')}" for s in seeds))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, type=Path)
    parser.add_argument("--train", required=True, type=Path)
    parser.add_argument("--label-column", default="")
    parser.add_argument("--test", required=True, type=Path)
    parser.add_argument("--validation", type=Path,
                        help="labelled rows like the test rows: the job's validation rows (validation_dataset_id)")
    parser.add_argument("--student", default="cnn")
    parser.add_argument("--method", default="kd")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="timing sweeps over the test rows (median quoted)")
    parser.add_argument("--chunk", type=int, default=512, help="test rows per paired timing step")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/cascade"))
    parser.add_argument("--first", type=int, default=0,
                        help="transfer set: the first N rows of --train not in --exclude")
    parser.add_argument("--exclude", type=Path, help="with --first: rows whose text is here are skipped")
    parser.add_argument("--remeasure", action="store_true", help="measure a seed again even if its rows are saved")
    args = parser.parse_args()
    if args.first:
        if not args.exclude:
            parser.error("--first needs --exclude (the teacher's training rows)")
        made = first_rows_not_in(args.train, args.exclude, args.first, args.out / "transfer.csv")
        print(f"transfer set: {made['rows']} rows = data rows 0..{made['last_data_row']} of {args.train} "
              f"(0-based, header excluded) less {made['skipped']} whose text is in {args.exclude}", flush=True)
        args.train = args.out / "transfer.csv"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    rows = [row for seed in args.seeds for row in run_seed(args, seed)]
    (args.out / "rows.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
