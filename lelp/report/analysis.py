"""Report data -> the numbers, tables and plain sentences on the page (numpy and scikit-learn only).

The headline reads ``metrics.json`` (the figures ``distill`` printed); the tables that need
per-row predictions read the eval sample kept in ``report_data.json``.
"""

from __future__ import annotations

import math

import numpy as np

from lelp.method.registry import Method, method_title

CALIBRATION_BINS = 10


def method_name(method: str) -> str:
    return method_title(method)


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def fmt_ratio(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


VALIDATION_METRICS = {
    # metrics.json's "validation_metric" -> what the scores of the validation split measure, in words
    "accuracy": "validation accuracy",
    "teacher_agreement": "agreement with the teacher (validation)",
    "mixed": "validation score (accuracy on labelled rows, agreement with the teacher on the rest)",
}


def validation_metric(metrics: dict) -> str:
    """What the candidates' and epochs' validation scores measure: ``accuracy``, ``teacher_agreement``
    (the held-out training rows have no labels: the score is agreement with the teacher's answers) or
    ``mixed``. Artifacts written before the field existed said "validation accuracy"."""
    return str(metrics.get("validation_metric") or "accuracy")


def validation_name(metrics: dict) -> str:
    return VALIDATION_METRICS.get(validation_metric(metrics), "validation score")


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def headline(metrics: dict) -> dict:
    """The headline figures (None where the job could not measure one) and its sentence as ``parts``.

    ``parts`` is a list of ``{"text"}`` and ``{"metric", "text"}`` pieces (the page marks the
    figures); a figure that is missing leaves its clause out, so the sentence never shows a blank,
    "None" or a ratio to nothing (``headline_text`` joins it for the command line).
    """
    student, teacher = metrics.get("student") or {}, metrics.get("teacher") or {}
    keeps = _ratio(student.get("accuracy"), teacher.get("accuracy"))
    speed = _ratio(student.get("sentences_per_second"), teacher.get("sentences_per_second"))
    smaller = _ratio(teacher.get("size_bytes"), student.get("size_bytes"))
    agreement = metrics.get("agreement")
    accuracy = student.get("accuracy")
    figures = {
        "keeps": None if keeps is None else _pct(keeps),
        "accuracy": None if accuracy is None else _pct(accuracy),
        "speed": None if speed is None else fmt_ratio(speed),
        "size": None if not smaller else fmt_ratio(smaller if smaller >= 1 else 1 / smaller),
        "size_word": "smaller" if smaller is None or smaller >= 1 else "larger",
        "agreement": None if agreement is None else _pct(agreement),
        "eval_rows": metrics.get("eval_rows") or None,
        "baseline": baseline_line(metrics),
    }
    figures["parts"] = _headline_parts(figures)
    return figures


def _headline_parts(f: dict) -> list[dict]:
    parts: list[dict] = []

    def add(*pieces: str | tuple[str]) -> None:
        """Plain strings are words; a 1-tuple ``(key,)`` is the figure ``f[key]``."""
        for piece in pieces:
            if isinstance(piece, tuple):
                value = f[piece[0]]
                parts.append({"metric": piece[0], "text": f"{value:,}" if isinstance(value, int) else value})
            elif piece:
                parts.append({"text": piece})

    speed, size = f["speed"] is not None, f["size"] is not None
    if f["keeps"] is not None:
        add("The student keeps ", ("keeps",), " of the teacher's accuracy")
        if speed:
            add(" at ", ("speed",), " times its speed on one CPU core")
        if size:
            add(" and " if speed else " and is ", ("size",), f" times {f['size_word']}")
        add(".")
    else:
        if f["accuracy"] is not None:
            add("The student's accuracy is ", ("accuracy",), " (the teacher's is zero or was not measured).")
        if speed or size:
            add(" " if parts else "", "The student ")
            if speed:
                add("runs at ", ("speed",), " times the teacher's speed on one CPU core")
            if size:
                add(" and is " if speed else "is ", ("size",), f" times {f['size_word']} than the teacher")
            add(".")
    if f["accuracy"] is None:
        add(" " if parts else "", "No evaluation row has a label, so accuracy was not measured.")
    if f["agreement"] is not None:
        add(" It agrees with the teacher on ", ("agreement",), " of the ")
        if f["eval_rows"]:
            add(("eval_rows",), " ")
        add("evaluation rows.")
    return parts


def headline_text(metrics: dict) -> str:
    """The headline as one plain sentence (the CLI's and the demo's summary line)."""
    return "".join(p["text"] for p in headline(metrics)["parts"])


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


def candidate_score(c: dict) -> float | None:
    """A candidate's validation score (``validation_score``; ``validation_accuracy`` in older artifacts)."""
    if "error" in c:
        return None
    return c.get("validation_score", c.get("validation_accuracy"))


_score = candidate_score


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
    kd, lelp, rnd = (_best_of(candidates, m) for m in (Method.KD, Method.LELP, Method.RANDOM_SUBCLASS))
    if kd is not None and lelp is not None:
        p = _score(kd)
        noise = 2 * math.sqrt(max(p * (1 - p), 1e-12) / n)
        diff = _score(lelp) - p
        band = f"\u00b1{noise * 100:.1f} points, two standard errors on {n} held-out rows"
        if winner == Method.KD:
            if diff < -noise:
                return f"LELP did worse than plain KD on your data ({diff * 100:+.1f} points): the KD student was kept."
            return f"LELP did not beat plain KD on your data (within noise, {band}): the KD student was kept."
        if winner == Method.LELP:
            tail = ""
            if rnd is not None and _score(rnd) >= _score(lelp) - noise:
                tail = (" The random-subclass control came within noise of it, so the gain may not come from "
                        "LELP's directions.")
            if diff > noise:
                return (f"LELP beat plain KD on your data by {diff * 100:.1f} points, more than the noise "
                        f"({band}): the LELP student was kept.{tail}")
            return (f"LELP scored {diff * 100:.1f} points above plain KD, within noise ({band}): the LELP student "
                    f"was kept, though plain KD would likely do as well.{tail}")
        if winner == Method.RANDOM_SUBCLASS:
            return ("The random-subclass control scored best: LELP's directions did not beat random ones on your "
                    "data, and the random-subclass student was kept.")
    best = max(scored, key=_score)
    return (f"{method_name(winner).capitalize()} scored best on the held-out split among {len(scored)} "
            f"candidates ({_score(best) * 100:.1f}% {validation_name(metrics)}) and was kept.")


def probs_of(data: dict, key: str) -> np.ndarray:
    rows = data.get(key) or []
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def baseline_line(metrics: dict) -> str | None:
    """One sentence: what the teacher bought, against the same student trained on the labels alone."""
    base = metrics.get("baseline")
    if not base:
        return None  # a report of an artifact written before the baseline existed
    if not base.get("trained"):
        return f"No-teacher baseline: {base.get('reason', 'not trained')}."
    student = metrics.get("student", {}).get("accuracy")
    if base.get("accuracy") is None or student is None:
        return None
    gain = (student - base["accuracy"]) * 100
    return (f"Without the teacher, the same {base.get('kind')} student trained on the "
            f"{base.get('train_rows', 0):,} labelled rows alone scores {base['accuracy'] * 100:.1f}%: "
            f"distillation {'gained' if gain >= 0 else 'lost'} {abs(gain):.1f} points.")
