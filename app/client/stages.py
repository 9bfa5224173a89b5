"""A job's progress in plain words, and an ETA a person can trust (the ``lelp`` progress bar's parts).

The worker reports internal names: stages (``extract``, ``fit_projector``) and candidates
(``kd-t1``, ``lelp-S2-b1-t1``, ``Candidate.name`` in ``lelp.config``). ``describe`` turns them
into "training student 2/3 (LELP, 2 sub-classes per class), epoch 3". ``SteadyEta`` turns the
worker's overall estimate, polled every second or so, into a countdown that keeps running
between polls and moves up only as much as the new figures demand.
"""

from __future__ import annotations

import re
import time
from typing import Any

METHOD_WORDS = {
    "ce": "hard labels",
    "kd": "plain KD",
    "fitnet": "FitNet",
    "lelp": "LELP",
    "random_subclass": "random sub-classes",
    "uniform_subclass": "uniform sub-classes",
    "kmeans_subclass": "k-means sub-classes",
}

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
    words = METHOD_WORDS.get(match["method"], match["method"])
    if match["subclasses"]:
        words += f", {match['subclasses']} sub-classes per class"
    return words


def describe(progress: dict[str, Any] | None, status: str | None = None) -> str:
    """The stage a job is in, in plain words (the progress bar's description)."""
    progress = progress or {}
    if status in ("succeeded", "failed", "cancelled"):
        return status
    stage = progress.get("stage") or ("queued" if status in (None, "queued") else "starting")
    index, total = progress.get("candidate"), progress.get("candidates")
    name = progress.get("candidate_name") or (progress.get("message") if stage == "fit_projector" else None)
    if stage in ("fit_projector", "train"):
        which = f" {index}/{total}" if index and total else ""
        method = candidate_words(name)
        text = f"training student{which}" + (f" ({method})" if method else "")
        if stage == "fit_projector":
            return text + ": building its targets"
        return text + (f", epoch {progress['epoch']}" if progress.get("epoch") else "")
    if stage == "extract" and (progress.get("message") or "").startswith("static table"):
        return "building the student's token table from the teacher's encoder"
    if stage == "evaluate" and name is None:
        chosen = candidate_words((progress.get("message") or "").removeprefix("evaluating "))
        return STAGE_WORDS["evaluate"] + (f" ({chosen})" if chosen and chosen != progress.get("message") else "")
    return STAGE_WORDS.get(stage, stage.replace("_", " "))


class SteadyEta:
    """Seconds left, from polled estimates: counts down between polls, never jumps up more than it must.

    A fresh estimate below the running countdown is taken at once (good news is believed);
    one above it moves the countdown only halfway up, so one slow poll does not swing the
    figure by minutes while a real slowdown still shows within a few polls. Before the job
    has made any measurable progress there is no estimate (``None``), never a made-up 0 s.
    """

    def __init__(self, clock=time.monotonic) -> None:  # noqa: ANN001
        self._clock = clock
        self._left: float | None = None
        self._at = 0.0

    def update(self, estimate: float | None) -> None:
        now = self._clock()
        if estimate is None or estimate < 0:
            return
        running = self.left()
        if running is None or estimate <= running:
            self._left = float(estimate)
        else:
            self._left = running + (estimate - running) / 2
        self._at = now

    def finish(self) -> None:
        self._left, self._at = 0.0, self._clock()

    def left(self) -> float | None:
        """Seconds left now: the last figure less the time since it was set, never below 0."""
        if self._left is None:
            return None
        return max(0.0, self._left - (self._clock() - self._at))
