"""The report's figures, drawn with matplotlib (Agg) and inlined as SVG ``data:`` URIs.

An ``<img src="data:image/svg+xml;base64,...">`` keeps each figure a document of its own (the
ids matplotlib writes into an SVG cannot clash between figures), scales on a phone, and makes
no request. Glyphs are drawn as paths, so the page needs no font. matplotlib is imported on
the first figure, never when ``lelp`` is imported.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from functools import cache

import numpy as np

WIDTH = 6.4  # inches at 72 pt: the SVGs scale to the column width anyway
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
          "#9c755f", "#bab0ac"]
STUDENT, TEACHER = COLORS[0], COLORS[1]


@cache
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "lelp-report", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 72,
                         "axes.titlesize": 10, "axes.titleweight": "bold",
                         # labels are the user's text, drawn literally: "$\\notacommand$" was parsed as
                         # mathtext, raised, and failed the job (issue 18)
                         "text.parse_math": False, "text.usetex": False})
    return plt


def _uri(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def confusion(matrix: np.ndarray, labels: Sequence[str], title: str, ylabel: str, xlabel: str,
              cmap: str = "Blues") -> str:
    plt = _pyplot()
    c = len(labels)
    side = min(2.2 + 0.45 * c, 5.0)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(matrix, cmap=cmap, vmin=0)
    top = matrix.max() or 1
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{int(matrix[i, j]):,}", ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > top * 0.6 else "black")
    ax.set_xticks(range(c), labels, rotation=30 if c > 3 else 0, ha="right" if c > 3 else "center")
    ax.set_yticks(range(c), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.spines[:].set_visible(False)
    return _uri(fig)


def reliability(curves: dict[str, dict]) -> str:
    """Reliability diagram: accuracy against confidence per bin, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfect calibration")
    colors = {"student": STUDENT, "teacher": TEACHER}
    for name, curve in curves.items():
        bins = curve["bins"]
        if bins:  # the student before calibration: its colour, dotted
            raw = name not in colors
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o" if not raw else "x",
                    color=colors.get(name, STUDENT), ls=":" if raw else "-", alpha=0.6 if raw else 1.0,
                    label=f"{name} (ECE {curve['ece']:.3f})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top class probability)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", frameon=False)
    return _uri(fig)


def training(history: list[dict], best_epoch: int | None, score_name: str = "validation score") -> str:
    """Train loss (left axis) and validation score (right axis, named by what it measures:
    ``lelp.report.analysis.validation_name``) per epoch, the best epoch marked."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(WIDTH * 0.7, 3.2))
    ax.plot(epochs, [h.get("train_loss") for h in history], marker="o", color=STUDENT, label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color=STUDENT)
    ax.set_xticks(epochs)
    val = [(h["epoch"], h["val_score"]) for h in history if h.get("val_score") is not None]
    handles, names = ax.get_legend_handles_labels()
    if val:
        right = ax.twinx()
        right.spines["right"].set_visible(True)
        right.plot(*zip(*val, strict=True), marker="s", color=TEACHER, label=score_name)
        right.set_ylabel(score_name, color=TEACHER)
        h2, n2 = right.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    if best_epoch is not None:
        ax.axvline(best_epoch, color="#59a14f", lw=1.5, ls=":")
        handles.append(ax.lines[-1])
        names.append(f"best epoch ({best_epoch})")
    ax.legend(handles, names, loc="upper right", frameon=False)
    return _uri(fig)


def candidates(names: list[str], scores: list[float], winner: int | None,
               score_name: str = "validation accuracy") -> str:
    """Every candidate's validation score as a horizontal bar, the winner in its own colour."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH * 0.8, 0.6 + 0.32 * len(names)))
    colors = [TEACHER if i == winner else "#bab0ac" for i in range(len(names))]
    ax.barh(range(len(names)), scores, color=colors)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    low = min(scores)
    ax.set_xlim(max(0.0, low - 0.1), min(1.0, max(scores) + 0.05) if max(scores) <= 1 else max(scores) * 1.05)
    for i, s in enumerate(scores):
        ax.text(s, i, f" {s:.3f}", va="center", fontsize=8)
    ax.set_xlabel(f"{score_name} (held-out split of the training data)")
    return _uri(fig)


def student_search(kinds: list[str], speedups: list[float], scores: list[float], chosen: int | None,
                   floor: float) -> str:
    """Each searched student kind: validation accuracy against speed-up over the teacher (log scale),
    the speed floor dashed, the kept kind in its own colour."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH * 0.6, 2.8))
    for i, (kind, x, y) in enumerate(zip(kinds, speedups, scores, strict=True)):
        ax.scatter([max(x, 1e-3)], [y], s=40, color=TEACHER if i == chosen else STUDENT, zorder=3)
        ax.annotate(kind, (max(x, 1e-3), y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(max(floor, 1e-3), color="#bab0ac", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("x the teacher's CPU speed (log; dashed: the floor)")
    ax.set_ylabel("validation accuracy")
    return _uri(fig)


def subclasses(points: list[list[float]], assignment: list[int], subclasses: int, title: str) -> str:
    """The class's rows in the 2-D PCA of the head's null space, coloured by pseudo-subclass."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.4, 3.0))
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    which = np.asarray(assignment, dtype=np.int64)
    for s in range(subclasses):
        inside = which == s
        ax.scatter(xy[inside, 0], xy[inside, 1], s=9, alpha=0.75, color=COLORS[s % len(COLORS)],
                   label=f"sub-class {s + 1}" if subclasses > 1 else "rows (one class, no sub-classes)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(loc="best", frameon=False, fontsize=7, markerscale=1.5)
    return _uri(fig)


def label_counts(names: list[str], splits: dict[str, list[int]]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH * 0.6, 0.8 + 0.35 * len(names) * max(len(splits), 1)))
    height = 0.8 / max(len(splits), 1)
    for k, ((split, counts), color) in enumerate(zip(splits.items(), (STUDENT, TEACHER, COLORS[2]),
                                                     strict=False)):
        ax.barh(np.arange(len(names)) + k * height, counts, height=height, color=color, label=split)
    ax.set_yticks(np.arange(len(names)) + height * (len(splits) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _uri(fig)


def token_lengths(lengths: list[int], max_length: int) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH * 0.6, 2.8))
    ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color=STUDENT)
    ax.axvline(max_length, color="#e15759", lw=1.5, ls="--", label=f"max_length {max_length}")
    ax.set_xlabel("tokens per row (teacher tokenizer)")
    ax.set_ylabel("rows")
    ax.legend(frameon=False)
    return _uri(fig)


def cascade(curve: list[dict], teacher_accuracy: float) -> str:
    """The cascade's trade-off: % of the teacher's accuracy and speed-up against the share deferred."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    x = [100 * p["deferred_fraction"] for p in curve]
    ax.plot(x, [100 * p["accuracy"] / teacher_accuracy for p in curve], color=STUDENT, marker=".",
            label="accuracy, % of the teacher's")
    ax.axhline(100, color="#999", lw=1, ls="--")
    ax.set_xlabel("rows sent to the teacher (%)")
    ax.set_ylabel("% of the teacher's accuracy")
    speed = [(xi, p["speedup"]) for xi, p in zip(x, curve, strict=True) if p.get("speedup")]
    if speed:
        right = ax.twinx()
        right.spines["right"].set_visible(True)
        right.plot([s[0] for s in speed], [s[1] for s in speed], color=TEACHER, label="throughput, x the teacher's")
        right.set_yscale("log")
        right.set_ylabel("throughput (x the teacher's)")
        right.legend(loc="lower right", frameon=False)
    ax.legend(loc="lower left", frameon=False)
    return _uri(fig)
