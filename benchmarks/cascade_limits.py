"""What bounds a cascade's throughput at a target (issue 22): reads ``benchmarks/cascade.py``'s output.

    python benchmarks/cascade_limits.py --teacher .lelp-demo/teacher --test ../shared/data/sst2_test.csv \\
        --out benchmarks/out/cascade-demo --seeds 0 1 2 [--threads 1]

For each seed and target (97/99/100% of the teacher's accuracy on test), on the test rows:

* ``deferred``: the share the validation-chosen threshold sends to the teacher (as ``cascade.py``);
* ``best_ranked``: the least share that reaches the target with the student's own confidence ranking,
  the threshold picked on test after the fact (what a perfect threshold choice would give: the gap
  to ``deferred`` is the cost of choosing on validation);
* ``oracle``: the least share that reaches it if only rows the student gets wrong and the teacher
  right were sent (what a perfect ranking would give: the gap to ``best_ranked`` is the cost of the
  student's confidence as a ranking);
* ``auroc``: how well the student's confidence ranks its own errors (1 = every error below every
  correct row);
* timing (``--no-timing``: the job's student/teacher ratio and token counts instead), in this process,
  best of ``--repeat``: the student on every test row, the teacher on
  every row and on the deferred rows alone (per row: the deferred rows are longer), and the bound
  ``1 / (student_s / teacher_s + deferred x per-row cost ratio)`` the cascade cannot beat.

With several seeds, one more line: the least share (after the fact, on test) when the seeds'
students are averaged into one (their mean probabilities rank the rows and answer): whether a
better confidence ranking is within reach of a few more cheap students.

``--labelled-validation FILE`` (labelled rows that are neither training nor test rows, e.g. SST-2
dev): each target's threshold chosen instead on those rows' labels (``lelp.cascade``'s own
``cascade_curve``), then applied to test: the share and % of the teacher a labelled validation set
would give, by three rules: the point estimate (``choose_threshold``), the rule a job with such a
file (``validation_dataset_id``) applies (``point_for_target``, ``source: "file"``: a 95% bound),
and the labels with the agreement floor.

``--job-rule TRAIN`` (the job's training file, labelled): the job's own validation rows again (the same
seed's split of TRAIN), each target's threshold re-chosen there by ``lelp.cascade.point_for_target`` from
the labels' curve alone and with the teacher-agreement floor, then applied to test: how a job's rule
choice does, for students trained before the rule changed.

Nothing else here is chosen: it only explains the figures of ``cascade.py``'s table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cascade import TARGETS, best_time  # noqa: E402


def auroc(score, positive) -> float:
    """P(score of a positive row > score of a negative row), ties half (Mann-Whitney)."""
    import numpy as np

    score, positive = np.asarray(score, dtype=float), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):  # average ranks over ties
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def least_share(student_probs, teacher_pred, truth, goal: float, *, oracle: bool) -> float:
    """The least share deferred whose cascade accuracy reaches ``goal`` (1.0 when none does)."""
    import numpy as np

    from lelp.cascade import deferral_accuracy

    n = len(truth)
    if oracle:
        student_ok = student_probs.argmax(1) == truth
        fixable = int((~student_ok & (teacher_pred == truth)).sum())
        acc = student_ok.mean() + np.arange(fixable + 1) / n
    else:
        acc = deferral_accuracy(student_probs, teacher_pred, truth)
    hit = np.flatnonzero(acc >= goal - 1e-12)
    return float(hit[0] / n) if len(hit) else 1.0


def run_seed(args, seed: int, teacher, predictor) -> list[dict]:
    import numpy as np

    from lelp.artifacts import load_student
    from lelp.data.datasets import read_table

    out = args.out / f"seed{seed}"
    rows = json.loads((out / "cascade_rows.json").read_text())
    test = read_table(args.test, label_column="label")
    texts = test.texts
    student = load_student(out)
    saved = out / "test_probs.npz"
    if saved.is_file():
        data = np.load(saved)
        student_probs, teacher_probs, truth = data["student"], data["teacher"], data["truth"]
    else:
        truth = _label_ids(teacher, test.labels)
        student_probs, teacher_probs = student.predict_proba(texts), predictor.predict_proba(texts)
        np.savez(saved, student=student_probs, teacher=teacher_probs, truth=truth)
    teacher_pred = teacher_probs.argmax(1)
    teacher_acc = float((teacher_pred == truth).mean())
    lengths = np.asarray([len(ids) for ids in teacher.tokenizer(list(texts), truncation=True,
                                                                   max_length=args.max_length)["input_ids"]])
    load_before = os.getloadavg()[0]
    job_x = json.loads((out / "metrics.json").read_text())["student"].get("x_teacher")
    if args.no_timing:  # the job's alternating ratio for the student, token counts for a deferred row's cost
        student_s, teacher_s = 1.0 / job_x, 1.0
    else:
        student_s = best_time(lambda: student.predict_proba(texts), args.repeat)
        teacher_s = best_time(lambda: predictor.predict_proba(texts), args.repeat)
    conf = student_probs.max(1)
    out_rows = []
    for row in rows:
        target = row["target"]
        deferred = np.flatnonzero(conf < row["threshold"])
        rest = [texts[i] for i in deferred]
        if args.no_timing:
            deferred_s = None
            per_row_ratio = float(lengths[deferred].mean() / lengths.mean()) if rest else 1.0
        else:
            deferred_s = best_time(lambda rest=rest: predictor.predict_proba(rest), args.repeat) if rest else 0.0
            per_row_ratio = (deferred_s / max(len(rest), 1)) / (teacher_s / len(texts)) if rest else 1.0
        d = len(deferred) / len(texts)
        goal = target * teacher_acc
        out_rows.append({
            "seed": seed, "target": target, "deferred": d,
            "best_ranked": least_share(student_probs, teacher_pred, truth, goal, oracle=False),
            "oracle": least_share(student_probs, teacher_pred, truth, goal, oracle=True),
            "auroc_errors": auroc(conf, student_probs.argmax(1) == truth),
            "auroc_disagreement": auroc(conf, student_probs.argmax(1) == teacher_pred),
            "student_s": student_s, "teacher_s": teacher_s, "deferred_teacher_s": deferred_s,
            "student_over_teacher": student_s / teacher_s, "deferred_per_row_cost": per_row_ratio,
            "mean_tokens_all": float(lengths.mean()),
            "mean_tokens_deferred": float(lengths[deferred].mean()) if len(deferred) else float("nan"),
            "bound_x": 1.0 / (student_s / teacher_s + d * per_row_ratio),
            "bound_x_at_best_ranked": 1.0 / (student_s / teacher_s + least_share(
                student_probs, teacher_pred, truth, goal, oracle=False)),
            "bound_x_at_oracle": 1.0 / (student_s / teacher_s + least_share(
                student_probs, teacher_pred, truth, goal, oracle=True)),
            "measured_x": row["x_teacher"], "student_x_teacher_job": job_x, "timed": not args.no_timing,
            "load_1min": [load_before, os.getloadavg()[0]]})
        print(json.dumps(out_rows[-1]), flush=True)
    return out_rows


def ensemble_line(args) -> str:
    """Least shares (test, after the fact) for one seed's student vs the seeds' students averaged."""
    import numpy as np

    data = [np.load(args.out / f"seed{seed}" / "test_probs.npz") for seed in args.seeds]
    teacher_pred, truth = data[0]["teacher"].argmax(1), data[0]["truth"]
    mean = np.mean([d["student"] for d in data], axis=0)
    teacher_acc = float((teacher_pred == truth).mean())
    parts = []
    for target in TARGETS:
        single = [least_share(d["student"], teacher_pred, truth, target * teacher_acc, oracle=False) for d in data]
        both = least_share(mean, teacher_pred, truth, target * teacher_acc, oracle=False)
        parts.append(f"{target * 100:g}%: {statistics.fmean(single):.3f} one student (mean of {len(data)}) vs "
                     f"{both:.3f} the {len(data)} averaged")
    acc = float((mean.argmax(1) == truth).mean())
    return ("Least share with the student's ranking (test, after the fact), " + "; ".join(parts)
            + f". The averaged students alone: {100 * acc / teacher_acc:.1f}% of the teacher.")


def _label_ids(teacher, values):
    """Class indices (numpy) of label names or ids, as a job encodes them."""
    import numpy as np

    from lelp.data.datasets import encode_labels

    return np.asarray(encode_labels(values, list(teacher.info.labels)))


def _on_test(args, seed: int):
    """``row(target, point)``: what a validation-chosen point's threshold does on the seed's saved test rows."""
    import numpy as np

    from lelp.cascade import cascade_accuracy, deferred_share

    test = np.load(args.out / f"seed{seed}" / "test_probs.npz")
    student, teacher_pred, truth = test["student"], test["teacher"].argmax(1), test["truth"]
    teacher_acc = float((teacher_pred == truth).mean())
    job_x = json.loads((args.out / f"seed{seed}" / "metrics.json").read_text())["student"].get("x_teacher")

    def row(target: float, point: dict) -> dict:
        share = deferred_share(student, point["threshold"])
        acc = cascade_accuracy(student, teacher_pred, truth, point["threshold"])
        return {"seed": seed, "target": target, "threshold": point["threshold"],
                "validation_deferred": point["deferred_fraction"], "deferred": share,
                "kept": acc / teacher_acc, "x_teacher_model": 1.0 / (1.0 / job_x + share)}

    return row


def labelled_validation(args, teacher, predictor) -> dict[str, list[dict]]:
    """Thresholds chosen on labelled validation rows, applied to test (every seed), by three rules: the
    labels' point estimate, the job's rule for a validation file (``point_for_target`` with ``source:
    "file"``: the target met with 1.645 standard errors to spare) and the labels with the agreement floor."""
    from lelp.artifacts import load_student
    from lelp.cascade import cascade_curve, choose_threshold, point_for_target
    from lelp.data.datasets import read_table

    val = read_table(args.labelled_validation, label_column="label")
    val_truth = _label_ids(teacher, val.labels)
    val_teacher = predictor.predict_proba(val.texts).argmax(1)
    val_teacher_acc = float((val_teacher == val_truth).mean())
    out: dict[str, list[dict]] = {"labels, point estimate": [], "labels, 95% bound (a validation file's rule)": [],
                                  "labels with the agreement floor": []}
    for seed in args.seeds:
        on_test = _on_test(args, seed)
        val_probs = load_student(args.out / f"seed{seed}").predict_proba(val.texts)  # calibrated, as the job's
        curve = cascade_curve(val_probs, val_teacher, val_truth, points=len(val_truth), paired=True)
        validation = {"rows": len(val_truth), "teacher_accuracy": val_teacher_acc, "points": curve}
        floor = {**validation, "agreement_points": cascade_curve(val_probs, val_teacher, val_teacher,
                                                                  points=len(val_truth))}
        for target in TARGETS:
            out["labels, point estimate"].append(
                on_test(target, choose_threshold(curve, target_fraction=target, teacher_accuracy=val_teacher_acc)))
            out["labels, 95% bound (a validation file's rule)"].append(
                on_test(target, point_for_target({**validation, "source": "file"}, target)))
            out["labels with the agreement floor"].append(on_test(target, point_for_target(floor, target)))
    return out


def job_rule(args, teacher, predictor) -> dict[str, list[dict]]:
    """Each target re-chosen on the job's own validation rows: labels alone, and with the agreement floor."""
    from lelp.artifacts import load_student
    from lelp.cascade import cascade_curve, point_for_target
    from lelp.data.datasets import read_table, split_rows
    from lelp.job import VALIDATION_FRACTION

    data = read_table(args.job_rule, label_column="label")
    truth_all = _label_ids(teacher, data.labels)
    out: dict[str, list[dict]] = {"labels alone": [], "with the agreement floor": []}
    for seed in args.seeds:
        _, held = split_rows(truth_all, VALIDATION_FRACTION, seed)  # as DistillJob splits an eval_path job
        texts, truth = [data.texts[i] for i in held], truth_all[held]
        probs = load_student(args.out / f"seed{seed}").predict_proba(texts)  # calibrated, as the job's
        teacher_pred = predictor.predict_proba(texts).argmax(1)
        validation = {"teacher_accuracy": float((teacher_pred == truth).mean()),
                      "points": cascade_curve(probs, teacher_pred, truth, points=100)}
        floor = {**validation, "agreement_points": cascade_curve(probs, teacher_pred, teacher_pred, points=100)}
        on_test = _on_test(args, seed)
        for rule, val in (("labels alone", validation), ("with the agreement floor", floor)):
            out[rule] += [on_test(target, point_for_target(val, target)) for target in TARGETS]
    return out


def labelled_table(rows: list[dict]) -> str:
    lines = ["| target | share deferred (labelled validation) | share deferred (test) | % of the teacher (test) | "
             "x the teacher (job's model) |", "|---|---|---|---|---|"]
    for target in TARGETS:
        r = [x for x in rows if x["target"] == target]
        lines.append(f"| {target * 100:g}% | {_ms([100 * x['validation_deferred'] for x in r])}% | "
                     f"{_ms([100 * x['deferred'] for x in r])}% | {_ms([100 * x['kept'] for x in r])}% | "
                     f"{_ms([x['x_teacher_model'] for x in r])}x |")
    return "\n".join(lines)


def _ms(values) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {se:.3f}" if abs(mean) < 10 else f"{mean:.1f} ± {se:.1f}"


def table(rows: list[dict]) -> str:
    lines = ["| target | share deferred (validation threshold) | least share, student's ranking "
             "(test, after the fact) | least share, perfect ranking | per-row cost of a deferred row "
             "(x an average row) | student / teacher time | bound x the teacher | measured x |",
             "|---|---|---|---|---|---|---|---|"]
    for target in TARGETS:
        r = [x for x in rows if x["target"] == target]
        lines.append(f"| {target * 100:g}% | {_ms([x['deferred'] for x in r])} | "
                     f"{_ms([x['best_ranked'] for x in r])} | "
                     f"{_ms([x['oracle'] for x in r])} | {_ms([x['deferred_per_row_cost'] for x in r])} | "
                     f"{_ms([x['student_over_teacher'] for x in r])} | {_ms([x['bound_x'] for x in r])} | "
                     f"{_ms([x['measured_x'] for x in r])} |")
    lines.append(f"\nAUROC of the student's confidence for its own errors {_ms([x['auroc_errors'] for x in rows])}, "
                 f"for disagreeing with the teacher {_ms([x['auroc_disagreement'] for x in rows])}; mean tokens "
                 f"{statistics.fmean(x['mean_tokens_all'] for x in rows):.1f} on all test rows, "
                 f"{statistics.fmean(x['mean_tokens_deferred'] for x in rows if x['target'] == 0.99):.1f} on those "
                 f"deferred at 99%.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, type=Path)
    parser.add_argument("--test", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-timing", action="store_true",
                        help="no timing: the student's cost from the job's alternating ratio, a deferred row's "
                             "from its token count (a proxy: the teacher's cost grows about linearly with tokens here)")
    parser.add_argument("--labelled-validation", type=Path,
                        help="labelled rows (not train, not test): thresholds chosen on them, applied to test")
    parser.add_argument("--job-rule", type=Path,
                        help="the jobs' (labelled) training file: targets re-chosen on their validation rows")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from lelp.artifacts import HFClassifierPredictor
    from lelp.teacher.loading import load_teacher

    torch.set_num_threads(args.threads)
    teacher = load_teacher(args.teacher)
    predictor = HFClassifierPredictor(teacher.model, teacher.tokenizer, list(teacher.info.labels),
                                      max_length=args.max_length)
    rows = [row for seed in args.seeds for row in run_seed(args, seed, teacher, predictor)]
    (args.out / "limits.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    if len(args.seeds) > 1:
        print("\n" + ensemble_line(args))
    if args.labelled_validation:
        chosen = labelled_validation(args, teacher, predictor)
        (args.out / "labelled_validation.json").write_text(json.dumps(chosen, indent=2))
        for rule, rows in chosen.items():
            print(f"\nThresholds chosen on {args.labelled_validation} (labelled), {rule}, applied to test:\n"
                  + labelled_table(rows))
    if args.job_rule:
        chosen = job_rule(args, teacher, predictor)
        (args.out / "job_rule.json").write_text(json.dumps(chosen, indent=2))
        for rule, rows in chosen.items():
            print(f"\nThresholds chosen on the job's validation rows, {rule}, applied to test:\n"
                  + labelled_table(rows).replace("(labelled validation)", "(job's validation rows)"))


if __name__ == "__main__":
    main()
