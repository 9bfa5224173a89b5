"""The progress record every long stage reports, and the cancel check it honours.

Plain callables keep the library free of any queue or web code: the CLI draws a
progress bar from them, the worker writes them to the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lelp.errors import JobCancelled
from lelp.method.registry import method_words


@dataclass(frozen=True)
class Progress:
    stage: str  # "load" | "extract" | "augment" | "fit_projector" | "train" | "evaluate" | "save"
    step: int = 0
    total_steps: int = 0  # the same name as the job's ``progress.total_steps`` in the API
    epoch: int | None = None
    loss: float | None = None
    message: str | None = None
    # On "fit_projector" (a candidate starts): its 1-based index and how many the search trains,
    # so that a reader can draw one bar for the whole job.
    candidate: int | None = None
    candidates: int | None = None
    # the held-out (validation) score of the epoch just finished, on the report that ends it
    val_score: float | None = None


# The share of a whole job each stage's band covers, in order: a job reports several stages,
# and the search trains several candidates, each from 0 to its own total_steps. One overall
# fraction (``overall_fraction``) lets a client draw one bar for the whole job. Teacher scoring
# ("extract", "augment") runs once per dataset, so its band fills with the largest pass seen.
STAGE_BANDS: dict[str, tuple[float, float]] = {
    "load": (0.0, 0.02),
    "extract": (0.02, 0.20),
    "augment": (0.02, 0.20),
    "train": (0.20, 0.95),  # split evenly between the candidates
    "evaluate": (0.95, 0.97),
    "save": (0.97, 0.99),
}


def overall_fraction(stage: str, fraction: float | None, candidate: int | None = None,
                     candidates: int | None = None) -> float | None:
    """Where a stage's own fraction puts the whole job (0-1), or None for a stage with no band.

    ``fit_projector`` starts its candidate's share of the training band; ``train`` fills it.
    """
    if stage in ("fit_projector", "train"):
        low, high = STAGE_BANDS["train"]
        total = max(candidates or 1, 1)
        index = min(max(candidate or 1, 1), total) - 1
        within = (fraction or 0.0) if stage == "train" else 0.0
        return low + (high - low) * (index + min(max(within, 0.0), 1.0)) / total
    if stage not in STAGE_BANDS:
        return None
    low, high = STAGE_BANDS[stage]
    return low + (high - low) * min(max(fraction or 0.0, 0.0), 1.0)


STAGE_WORDS = {
    "queued": "waiting for a worker",
    "load": "loading the teacher and the data",
    "extract": "scoring the data with the teacher",
    "augment": "writing teacher-scored variants",
    "evaluate": "evaluating the best student",
    "save": "saving the student and its report",
    "export": "building the ONNX export",
}

CANDIDATE = re.compile(r"^(?P<method>[a-z_]+?)(?:-S(?P<subclasses>\d+)-b(?P<beta>[0-9.e+-]+?))?-t(?P<tau>[0-9.e+-]+)$")


def candidate_words(name: str | None) -> str:
    """``kd-t1`` -> ``plain KD``; ``lelp-S2-b1-t1`` -> ``LELP, 2 sub-classes per class``."""
    if not name:
        return ""
    match = CANDIDATE.match(name)
    if match is None:
        return name
    words = method_words(match["method"])
    if match["subclasses"]:
        words += f", {match['subclasses']} sub-classes per class"
    return words


def stage_words(stage: str, message: str | None = None, *, candidate: int | None = None,
                candidates: int | None = None, candidate_name: str | None = None, epoch: int | None = None) -> str:
    """A stage in plain words: "training student 2/3 (LELP, 2 sub-classes per class), epoch 3"."""
    name = candidate_name or (message if stage == "fit_projector" else None)
    if stage in ("fit_projector", "train"):
        which = f" {candidate}/{candidates}" if candidate and candidates else ""
        method = candidate_words(name)
        text = f"training student{which}" + (f" ({method})" if method else "")
        if stage == "fit_projector":
            return text + ": building its targets"
        return text + (f", epoch {epoch}" if epoch else "")
    if stage == "extract" and (message or "").startswith("static table"):
        return "building the student's token table from the teacher's encoder"
    return STAGE_WORDS.get(stage, stage.replace("_", " "))


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def report(callback: ProgressCallback | None, progress: Progress) -> None:
    if callback is not None:
        callback(progress)


def check_cancelled(should_cancel: CancelCheck | None) -> None:
    """Raise JobCancelled when the caller asked to stop."""
    if should_cancel is not None and should_cancel():
        raise JobCancelled("the job was cancelled")
