"""What the report needs from a job, taken while the teacher and the arrays are still at hand.

Every piece is bounded (a seeded sample of rows, a few texts), so ``report_data.json`` stays
small whatever the data size, and ``lelp report`` can redraw the page without the teacher.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REPORT_DATA_FORMAT = 1
EVAL_SAMPLE_ROWS = 5000       # rows whose probabilities are kept (confusion, calibration)
POINTS_PER_CLASS = 300        # rows per class in the 2-D projection
TOP_TEXTS = 5                 # texts per pseudo-subclass
DISAGREEMENT_EXAMPLES = 8
LENGTH_SAMPLE_ROWS = 2000     # rows tokenised for the length distribution
TEXT_CHARS = 300              # a stored text is cut to this many characters


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "\u2026"


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


PROB_DECIMALS = 6


def eval_section(labels: np.ndarray, student_probs: np.ndarray, teacher_probs: np.ndarray,
                 texts: Sequence[str], text_pairs: Sequence[str] | None, class_names: Sequence[str],
                 seed: int = 0, student_raw_probs: np.ndarray | None = None) -> dict:
    """Eval rows of both models: probabilities for a bounded sample, a few disagreement texts.
    ``student_raw_probs``: the student's before calibration (``student_probs`` are after)."""
    n = len(labels)
    rows = _sample(n, EVAL_SAMPLE_ROWS, seed)
    student_pred, teacher_pred = student_probs.argmax(1), teacher_probs.argmax(1)
    differ = np.flatnonzero(student_pred != teacher_pred)
    # the teacher's most confident rows first: where the student missing it is clearest
    differ = differ[np.argsort(-teacher_probs[differ].max(1), kind="stable")][:DISAGREEMENT_EXAMPLES]
    examples = [{
        "text": _short(texts[i]), "text_pair": _short(text_pairs[i]) if text_pairs is not None else None,
        "label": class_names[labels[i]] if labels[i] >= 0 else None,
        "teacher": class_names[teacher_pred[i]], "teacher_score": round(float(teacher_probs[i].max()), 4),
        "student": class_names[student_pred[i]], "student_score": round(float(student_probs[i].max()), 4),
    } for i in differ]
    # 6 decimals: a calibrated student's probabilities can sit within 1e-4 of each other (a high
    # temperature flattens them), and 4 decimals turned those rows into ties that changed the argmax
    return {"rows": int(n), "sampled_rows": int(len(rows)),
            "labels": [int(x) for x in labels[rows]],
            "student_probs": np.round(student_probs[rows], PROB_DECIMALS).tolist(),
            "teacher_probs": np.round(teacher_probs[rows], PROB_DECIMALS).tolist(),
            **({"student_raw_probs": np.round(student_raw_probs[rows], PROB_DECIMALS).tolist()}
               if student_raw_probs is not None else {}),
            "disagreements": int((student_pred != teacher_pred).sum()), "examples": examples}


def null_space_projector(head_weight: np.ndarray) -> np.ndarray:
    """(D-r, D) orthonormal basis of the head's null space: what the classifier does not read."""
    from lelp.method.projection import head_bases  # torch: only where a job runs, not for `lelp report`

    _, null = head_bases(head_weight, head_weight.shape[1], null_space=True)
    return null


def subclass_section(targets: np.ndarray, classes: np.ndarray, subclasses: int, embeddings,
                     null_basis: np.ndarray, texts: Sequence[str], class_names: Sequence[str],
                     seed: int = 0) -> dict:
    """Per class: a 2-D PCA of its rows' teacher embeddings in the head's null space, each point
    coloured by its pseudo-subclass (argmax of the targets), and the top texts of each sub-class.

    ``targets`` is (n, C*S) with column c*S+s (S = 1 for KD-like methods: one colour per class);
    ``classes`` is the class each row was assigned to when the targets were built.
    """
    s = subclasses
    out = []
    for c, name in enumerate(class_names):
        members = np.flatnonzero(classes == c)
        block = targets[members, c * s:(c + 1) * s] if len(members) else np.zeros((0, s))
        top = []
        for k in range(s):
            order = members[np.argsort(-block[:, k], kind="stable")[:TOP_TEXTS]] if len(members) else []
            top.append([{"text": _short(texts[i]), "p": round(float(targets[i, c * s + k]), 4)} for i in order])
        picked = members[_sample(len(members), POINTS_PER_CLASS, seed + c)]
        points, explained = [], []
        if len(picked) >= 3:
            z = np.asarray(embeddings[picked], dtype=np.float32) @ null_basis.T.astype(np.float32)
            z -= z.mean(0)
            u, sv, _ = np.linalg.svd(z, full_matrices=False)
            coords = u[:, :2] * sv[:2]
            total = float((sv ** 2).sum()) or 1.0
            explained = [round(float(v ** 2 / total), 4) for v in sv[:2]]
            points = np.round(coords, 4).tolist()
        assignment = targets[picked, c * s:(c + 1) * s].argmax(1).tolist() if len(picked) else []
        sizes = np.bincount(block.argmax(1), minlength=s).tolist() if len(members) else [0] * s
        out.append({"class": name, "rows": int(len(members)), "subclass_rows": sizes, "points": points,
                    "assignment": assignment, "explained_variance": explained, "top_texts": top})
    return {"subclasses": s, "classes": out}


def data_section(train_label_counts: dict, train_rows: int, eval_label_counts: dict | None, eval_rows: int,
                 token_lengths: np.ndarray, max_length: int) -> dict:
    """Rows, label counts and the token-length distribution (of a sample) against ``max_length``."""
    lengths = np.asarray(token_lengths, dtype=np.int64)
    return {"train_rows": int(train_rows), "train_label_counts": train_label_counts,
            "eval_rows": int(eval_rows), "eval_label_counts": eval_label_counts,
            "token_lengths": lengths.tolist(), "max_length": int(max_length),
            "truncated_share": float((lengths > max_length).mean()) if len(lengths) else 0.0}


def token_lengths(tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None, seed: int = 0) -> np.ndarray:
    """Tokens per row (special tokens included, nothing truncated) for a sample of the rows."""
    rows = _sample(len(texts), LENGTH_SAMPLE_ROWS, seed)
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    first = [texts[i] for i in rows]
    second = [text_pairs[i] for i in rows] if text_pairs is not None else None
    encoded = tokenizer(first, second, truncation=False, add_special_tokens=True, verbose=False)
    return np.asarray([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
