"""Calibration and cascades: numbers only (numpy, no torch), shared by the job and the service.

* **Temperature** (Guo et al. 2017): one scalar ``T`` that divides the student's class
  log-probabilities, fitted on the job's validation rows by minimising their negative log
  likelihood. It never changes the argmax (so never the accuracy); it makes the top-class
  probability worth thresholding, which is what a cascade does.
* **Cascade**: the student answers every row; rows whose (calibrated) top probability is under
  a threshold go to the teacher. On rows where both models' answers are known, the curve of
  accuracy against the share deferred follows from sorting by confidence (``cascade_curve``).
  The threshold for a user's target is chosen on validation points only (``choose_threshold``)
  and the service applies it as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Temperatures searched (log-spaced); the NLL is convex in 1/T, a fine grid is exact enough.
TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
#: Points kept of a curve (deferred fractions 0, 1/N, ..., 1).
CURVE_POINTS = 50


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the calibrated class probabilities (rows of ``probs`` sum to one)."""
    probs = np.asarray(probs)
    if temperature == 1.0 or probs.size == 0:
        return probs
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return (out / out.sum(axis=1, keepdims=True)).astype(probs.dtype if probs.dtype.kind == "f" else np.float64)


def nll(probs: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log likelihood of the true class (rows with truth < 0 are skipped)."""
    truth = np.asarray(truth)
    keep = truth >= 0
    if not keep.any():
        return float("nan")
    picked = np.asarray(probs)[keep, truth[keep]]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> float:
    """The temperature of least validation NLL (1.0 when there is nothing to fit on)."""
    truth = np.asarray(truth)
    if len(truth) == 0 or not (truth >= 0).any():
        return 1.0
    losses = [nll(apply_temperature(probs, float(t)), truth) for t in TEMPERATURES]
    best = float(TEMPERATURES[int(np.nanargmin(losses))])
    # keep T = 1 when it is as good: no change without evidence
    return 1.0 if nll(probs, truth) <= min(losses) + 1e-9 else round(best, 4)


def _order(student_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows least confident first (stable), and their confidences."""
    conf = np.asarray(student_probs).max(axis=1)
    order = np.argsort(conf, kind="stable")
    return order, conf[order]


def _deferral_mean(student_probs: np.ndarray, answered: np.ndarray, deferred: np.ndarray) -> np.ndarray:
    """The mean over rows of ``answered`` (a row the student answers) or ``deferred`` (a row sent to the
    teacher) when the k least confident rows go to the teacher, for k = 0..n (n+1 values)."""
    order, _ = _order(student_probs)
    gain = np.concatenate([[0.0], np.cumsum(deferred[order] - answered[order])])
    return (answered.sum() + gain) / max(len(answered), 1)


def deferral_accuracy(student_probs: np.ndarray, teacher_pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Accuracy when the k least confident rows go to the teacher, for k = 0..n (n+1 values)."""
    student_ok = (np.asarray(student_probs).argmax(1) == truth).astype(np.float64)
    teacher_ok = (np.asarray(teacher_pred) == truth).astype(np.float64)
    return _deferral_mean(student_probs, student_ok, teacher_ok)


def both_correct(student_probs: np.ndarray, teacher_pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The share of rows where the cascade and the teacher are both right when the k least confident rows go
    to the teacher, for k = 0..n: with ``deferral_accuracy`` it gives the paired variance of their difference."""
    teacher_ok = np.asarray(teacher_pred) == truth
    both = (np.asarray(student_probs).argmax(1) == truth) & teacher_ok
    # a deferred row is the teacher's answer: both right exactly where the teacher is
    return _deferral_mean(student_probs, both.astype(np.float64), teacher_ok.astype(np.float64))


def speedup(deferred_fraction: float, student_rows_per_s: float | None,
            teacher_rows_per_s: float | None) -> float | None:
    """Throughput of the cascade as x the teacher's: every row pays the student, a share pays the teacher."""
    if not student_rows_per_s or not teacher_rows_per_s:
        return None
    return 1.0 / (teacher_rows_per_s / student_rows_per_s + deferred_fraction)


def cascade_curve(student_probs: np.ndarray, teacher_pred: np.ndarray, truth: np.ndarray, *,
                  student_rows_per_s: float | None = None, teacher_rows_per_s: float | None = None,
                  points: int = CURVE_POINTS, paired: bool = False) -> list[dict]:
    """``[{"deferred_fraction", "accuracy", "speedup", "threshold"}]`` at ``points + 1`` even steps of the
    share deferred. ``threshold``: the confidence under which rows are deferred to reach that share.
    ``paired``: each point also has ``both_correct`` (``both_correct``), for ``meets_target``'s bound."""
    truth = np.asarray(truth)
    n = len(truth)
    if n == 0:
        return []
    acc = deferral_accuracy(student_probs, teacher_pred, truth)
    both = both_correct(student_probs, teacher_pred, truth) if paired else None
    _, conf = _order(student_probs)
    out = []
    for k in sorted({round(i * n / points) for i in range(points + 1)}):
        fraction = k / n
        # defer rows with confidence < threshold: the k-th smallest confidence (1.0+ defers all)
        threshold = float(conf[k]) if k < n else 1.000001
        out.append({"deferred_fraction": round(fraction, 5), "accuracy": round(float(acc[k]), 5),
                    "speedup": None if (s := speedup(fraction, student_rows_per_s, teacher_rows_per_s)) is None
                    else round(s, 3), "threshold": round(threshold, 6)})
        if both is not None:
            out[-1]["both_correct"] = round(float(both[k]), 5)
    return out


#: One-sided z of the bound a target is held to on validation rows like the traffic (95%): see ``meets_target``.
TARGET_CONFIDENCE_Z = 1.645


def meets_target(point: dict, target_fraction: float, teacher_accuracy: float, rows: int,
                 z: float = TARGET_CONFIDENCE_Z) -> bool:
    """Whether a validation point reaches ``target_fraction`` of the teacher's accuracy with ``z`` standard
    errors to spare. The difference (cascade right) - target x (teacher right) is averaged over the same rows,
    so its variance comes from the two accuracies and ``both_correct``; the rows where the two models
    answer alike cancel. 872 rows leave about a point of noise, as much as a 99% target allows: without the
    bound, thresholds chosen on SST-2 dev kept 97.7-98.8% of the teacher on test for a 99% target."""
    acc, tacc = point["accuracy"], teacher_accuracy
    margin = acc - target_fraction * tacc
    if "both_correct" not in point or rows <= 0:
        return margin >= -1e-12
    variance = (acc * (1 - acc) + target_fraction ** 2 * tacc * (1 - tacc)
                - 2 * target_fraction * (point["both_correct"] - acc * tacc))
    return margin - z * (max(variance, 0.0) / rows) ** 0.5 >= -1e-12


def choose_threshold(points: Sequence[dict], *, target_fraction: float | None = None,
                     teacher_accuracy: float | None = None, max_deferred_fraction: float | None = None) -> dict:
    """The point of a validation curve that meets the target with the fewest rows deferred.

    ``target_fraction``: the cascade's accuracy must reach that fraction of ``teacher_accuracy``
    (the first point that does; the last point, everything deferred, when none does).
    ``max_deferred_fraction``: the most accurate point within that share deferred.
    """
    pts = sorted(points, key=lambda p: p["deferred_fraction"])
    if not pts:
        raise ValueError("no validation curve")
    if max_deferred_fraction is not None:
        within = [p for p in pts if p["deferred_fraction"] <= max_deferred_fraction + 1e-12] or pts[:1]
        return max(within, key=lambda p: (p["accuracy"], -p["deferred_fraction"]))
    if target_fraction is None or teacher_accuracy is None:
        raise ValueError("give target_fraction with teacher_accuracy, or max_deferred_fraction")
    goal = target_fraction * teacher_accuracy - 1e-12
    return next((p for p in pts if p["accuracy"] >= goal), pts[-1])


def point_for_target(validation: dict, target: float) -> dict:
    """The validation point a target picks, the same in the job's report and in ``POST /cascade``.

    On the validation truth's curve (``points``: labels where the rows have them), the first point
    that reaches the target. Where the rows are labelled the job also stores ``agreement_points``,
    the curve against the teacher's own answers (what an unlabelled job's ``points`` are), and the
    point is never one that curve rejects: validation rows drawn like the training rows can flatter a
    student that learned from those rows' labels (the demo's students, trained on 6,300 labelled SST-2
    phrases, beat the teacher by 1-2 points on validation phrases and trailed it by 3 on test
    sentences, so the labels alone deferred nothing and kept 96% of the teacher for a 99% target).
    Labels only ever add caution.

    Validation rows from a file of their own (``source: "file"``, rows like the traffic that no student
    trained on) have no such bias, only noise: there the point is the first that ``meets_target``.
    """
    points = sorted(validation["points"], key=lambda p: p["deferred_fraction"])
    if validation.get("source") == "file":
        # rows like the traffic, none trained on (``validation_dataset_id``): their labels are trusted, their
        # noise is not: the first point whose bound reaches the target
        return next((p for p in points if meets_target(p, target, validation["teacher_accuracy"],
                                                        int(validation.get("rows") or 0))), points[-1])
    point = choose_threshold(points, target_fraction=target, teacher_accuracy=validation["teacher_accuracy"])
    agreement = validation.get("agreement_points")
    if agreement:
        safe = choose_threshold(agreement, target_fraction=target, teacher_accuracy=1.0)
        if safe["deferred_fraction"] > point["deferred_fraction"]:
            # both curves come from one confidence ranking of the same rows: same shares, same thresholds
            point = next((p for p in points if p["deferred_fraction"] >= safe["deferred_fraction"] - 1e-9),
                         points[-1])
    return point


def deferred_share(student_probs: np.ndarray, threshold: float) -> float:
    """The share of rows a threshold sends to the teacher."""
    conf = np.asarray(student_probs).max(axis=1)
    return float((conf < threshold).mean()) if len(conf) else 0.0


def cascade_accuracy(student_probs: np.ndarray, teacher_pred: np.ndarray, truth: np.ndarray,
                     threshold: float) -> float:
    """Accuracy of the cascade at a fixed threshold (how a validation-chosen threshold does on test)."""
    probs = np.asarray(student_probs)
    deferred = probs.max(axis=1) < threshold
    answer = np.where(deferred, np.asarray(teacher_pred), probs.argmax(1))
    truth = np.asarray(truth)
    return float((answer == truth).mean()) if len(truth) else 0.0


#: Targets (fractions of the teacher's accuracy) every job reports on its evaluation rows.
STANDARD_TARGETS = (0.95, 0.97, 0.99, 1.0)


def at_target(validation: dict, student_probs: np.ndarray, teacher_pred: np.ndarray, truth: np.ndarray,
              target: float) -> dict:
    """The threshold chosen on validation for ``target`` and what it does on the given (evaluation) rows."""
    point = point_for_target(validation, target)
    threshold = point["threshold"]
    teacher_acc = float((np.asarray(teacher_pred) == np.asarray(truth)).mean()) if len(truth) else 0.0
    acc = cascade_accuracy(student_probs, teacher_pred, truth, threshold)
    return {"target": target, "threshold": threshold, "validation_deferred_fraction": point["deferred_fraction"],
            "deferred_fraction": round(deferred_share(student_probs, threshold), 5), "accuracy": round(acc, 5),
            "teacher_fraction": round(acc / teacher_acc, 5) if teacher_acc else None}
