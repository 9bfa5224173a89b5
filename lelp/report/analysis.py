"""Report data -> the numbers, tables and plain sentences on the page (numpy and scikit-learn only).

The headline reads ``metrics.json`` (the figures ``distill`` printed); the tables that need
per-row predictions read the eval sample kept in ``report_data.json``.
"""

from __future__ import annotations

import math

import numpy as np

from lelp.evaluate import baseline_line

CALIBRATION_BINS = 10
METHOD_NAMES = {"kd": "plain KD", "lelp": "LELP", "random_subclass": "the random-subclass control",
                "uniform_subclass": "the uniform-subclass control", "kmeans_subclass": "k-means sub-classes",
                "ce": "hard-label training", "fitnet": "FitNet"}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def fmt_ratio(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def headline(metrics: dict) -> dict:
    """The four headline figures (None where the job could not measure one) and the sentence."""
    student, teacher = metrics.get("student", {}), metrics.get("teacher", {})
    keeps = _ratio(student.get("accuracy"), teacher.get("accuracy"))
    speed = _ratio(student.get("sentences_per_second"), teacher.get("sentences_per_second"))
    smaller = _ratio(teacher.get("size_bytes"), student.get("size_bytes"))
    agreement = metrics.get("agreement")
    figures = {
        "keeps": None if keeps is None else f"{keeps * 100:.1f}%",
        "speed": None if speed is None else fmt_ratio(speed),
        "size": None if smaller is None else fmt_ratio(smaller if smaller >= 1 else 1 / smaller),
        "size_word": "smaller" if smaller is None or smaller >= 1 else "larger",
        "agreement": None if agreement is None else f"{agreement * 100:.1f}%",
        "eval_rows": metrics.get("eval_rows"),
        "baseline": baseline_line(metrics),  # lelp.evaluate
    }
    return figures


def per_class(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> list[dict]:
    """Precision, recall, F1 and support of each class over the labelled rows."""
    from sklearn.metrics import precision_recall_fscore_support

    mask = labels >= 0
    if not mask.any():
        return []
    p, r, f, n = precision_recall_fscore_support(labels[mask], pred[mask], labels=list(range(num_classes)),
                                                 zero_division=0)
    return [{"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]), "support": int(n[c])}
            for c in range(num_classes)]


def confusion(rows: np.ndarray, cols: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j]: rows with ``rows == i`` and ``cols == j`` (rows -1 skipped)."""
    mask = rows >= 0
    return np.bincount(rows[mask] * num_classes + cols[mask], minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Equal-width confidence bins: mean confidence, accuracy and share of rows per bin, and the ECE.

    Written out (a dozen lines) because scikit-learn's ``calibration_curve`` is binary only;
    this is the usual multi-class "top label" form of the reliability diagram.
    """
    mask = labels >= 0
    if not mask.any():
        return {"bins": [], "ece": None}
    conf = probs[mask].max(1)
    correct = probs[mask].argmax(1) == labels[mask]
    which = np.minimum((conf * bins).astype(int), bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            c, a, share = float(conf[inside].mean()), float(correct[inside].mean()), float(inside.mean())
            ece += share * abs(a - c)
            out.append({"low": b / bins, "high": (b + 1) / bins, "confidence": c, "accuracy": a, "share": share})
    return {"bins": out, "ece": ece}


def _score(c: dict) -> float | None:
    return c.get("validation_accuracy") if "error" not in c else None


def _best_of(candidates: list[dict], method: str) -> dict | None:
    scored = [c for c in candidates if c["method"] == method and _score(c) is not None]
    return max(scored, key=_score) if scored else None


def is_winner(candidate: dict, chosen: dict) -> bool:
    keys = ("method", "subclasses", "beta", "tau")
    return "error" not in candidate and all(candidate.get(k) == chosen.get(k) for k in keys)


def verdict(metrics: dict) -> str:
    """One plain sentence on what the search found and which student was kept."""
    candidates, chosen = metrics.get("candidates", []), metrics.get("chosen", {})
    scored = [c for c in candidates if _score(c) is not None]
    winner = chosen.get("method", metrics.get("method", "?"))
    if len(scored) < 2:
        return (f"No search: one configuration ({method_name(winner)}) was trained as asked, so there was "
                "nothing to compare it with.")
    n = max(int(metrics.get("validation_rows") or 0), 1)
    kd, lelp, rnd = (_best_of(candidates, m) for m in ("kd", "lelp", "random_subclass"))
    if kd is not None and lelp is not None:
        p = _score(kd)
        noise = 2 * math.sqrt(max(p * (1 - p), 1e-12) / n)
        diff = _score(lelp) - p
        band = f"\u00b1{noise * 100:.1f} points, two standard errors on {n} held-out rows"
        if winner == "kd":
            if diff < -noise:
                return f"LELP did worse than plain KD on your data ({diff * 100:+.1f} points): the KD student was kept."
            return f"LELP did not beat plain KD on your data (within noise, {band}): the KD student was kept."
        if winner == "lelp":
            tail = ""
            if rnd is not None and _score(rnd) >= _score(lelp) - noise:
                tail = (" The random-subclass control came within noise of it, so the gain may not come from "
                        "LELP's directions.")
            if diff > noise:
                return (f"LELP beat plain KD on your data by {diff * 100:.1f} points, more than the noise "
                        f"({band}): the LELP student was kept.{tail}")
            return (f"LELP scored {diff * 100:.1f} points above plain KD, within noise ({band}): the LELP student "
                    f"was kept, though plain KD would likely do as well.{tail}")
        if winner == "random_subclass":
            return ("The random-subclass control scored best: LELP's directions did not beat random ones on your "
                    "data, and the random-subclass student was kept.")
    best = max(scored, key=_score)
    return (f"{method_name(winner).capitalize()} scored best on the held-out split among {len(scored)} "
            f"candidates ({_score(best) * 100:.1f}% validation accuracy) and was kept.")


def probs_of(data: dict, key: str) -> np.ndarray:
    rows = data.get(key) or []
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
