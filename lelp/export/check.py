"""Checked, not assumed: an export is scored against the torch student on the same rows.

fp32 must reproduce the torch student's class probabilities to ``FP32_TOLERANCE`` (max
absolute difference), or the export is refused. int8 changes the numbers by design, so
its cost is reported, not judged: accuracy against the labels (where rows have them),
the change from fp32 and from torch, and how often it picks the same class as fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP32_TOLERANCE = 1e-4
#: the most check rows scored (both runtimes run all of them; a few hundred give stable figures)
MAX_CHECK_ROWS = 1000

#: rows for a check when the caller has no eval data: label-free figures only (diff, agreement)
PROBE_TEXTS = [
    "a lovely warm film with a great cast", "the plot was dull and the acting awful", "quite a good story",
    "a sad and grim scene", "the team won the match", "I would not recommend it to anyone",
    "an absolute triumph from start to finish", "it was fine, I guess", "the coach praised the league",
    "stock prices fell sharply on monday", "new phone released with a better camera",
    "what a waste of two hours!", "surprisingly moving and beautifully shot", "ok", "",
    "the the the the the", "Sehr gut, aber zu lang.", "terrible service but great food?",
    "one of the best books I have read this year, full of ideas and humour and warmth and care",
]


@dataclass
class CheckRows:
    """Rows to score both runtimes on; ``labels`` are class ids (-1: unlabelled), or None."""

    texts: list[str]
    text_pairs: list[str] | None = None
    labels: np.ndarray | None = None
    source: str = "eval"

    @classmethod
    def probe(cls) -> CheckRows:
        return cls(list(PROBE_TEXTS), None, None, "probe")

    def head(self, n: int) -> CheckRows:
        return CheckRows(self.texts[:n], self.text_pairs[:n] if self.text_pairs is not None else None,
                         self.labels[:n] if self.labels is not None else None, self.source)


def accuracy(probs: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    mask = np.asarray(labels) >= 0
    if not mask.any():
        return None
    return float((probs[mask].argmax(1) == np.asarray(labels)[mask]).mean())


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compare(torch_probs: np.ndarray, fp32_probs: np.ndarray, int8_probs: np.ndarray | None,
            rows: CheckRows) -> dict:
    """The figures of one export (JSON-ready); ``passed`` is the fp32 tolerance check."""

    def agree(a: np.ndarray, b: np.ndarray) -> float:
        return float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0

    def max_diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max()) if len(a) else 0.0

    acc_torch, acc_fp32 = accuracy(torch_probs, rows.labels), accuracy(fp32_probs, rows.labels)
    report = {
        "rows": len(rows.texts), "rows_source": rows.source,
        "labelled_rows": int((np.asarray(rows.labels) >= 0).sum()) if rows.labels is not None else 0,
        "tolerance": FP32_TOLERANCE,
        "torch": {"accuracy": acc_torch},
        "fp32": {"max_abs_diff": max_diff(fp32_probs, torch_probs), "agreement_with_torch": agree(fp32_probs,
                 torch_probs), "accuracy": acc_fp32},
    }
    report["passed"] = report["fp32"]["max_abs_diff"] <= FP32_TOLERANCE
    if int8_probs is not None:
        acc_int8 = accuracy(int8_probs, rows.labels)
        report["int8"] = {"max_abs_diff_vs_fp32": max_diff(int8_probs, fp32_probs),
                          "agreement_with_fp32": agree(int8_probs, fp32_probs), "accuracy": acc_int8,
                          "accuracy_delta_vs_fp32": _delta(acc_int8, acc_fp32),
                          "accuracy_delta_vs_torch": _delta(acc_int8, acc_torch)}
    return report


def score(predict_proba, rows: CheckRows) -> np.ndarray:
    return np.asarray(predict_proba(rows.texts, rows.text_pairs), dtype=np.float32)



def rows_from_table(path, labels: list[str], *, text_column: str = "text", text_pair_column: str | None = None,
                    label_column: str | None = "label", max_rows: int | None = None) -> CheckRows:
    """Check rows from a data file (its label names must be the model's; empty labels are unlabelled)."""
    from lelp.data.datasets import encode_labels, read_table

    data = read_table(path, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column)
    n = len(data.texts) if max_rows is None else min(max_rows, len(data.texts))
    ids = np.asarray(encode_labels(data.labels[:n], labels, source=str(getattr(path, "name", path))))
    return CheckRows(data.texts[:n], data.text_pairs[:n] if data.text_pairs is not None else None, ids, "eval")
