"""A job's progress in plain words, and an ETA a person can trust (the ``lelp`` progress bar's parts).

The worker reports internal names: stages (``extract``, ``fit_projector``) and candidates
(``kd-t1``, ``lelp-S2-b1-t1``, ``Candidate.name`` in ``lelp.config``). ``describe`` turns them
into "training student 2/3 (LELP, 2 sub-classes per class), epoch 3". ``SteadyEta`` turns the
worker's overall estimate, polled every second or so, into a countdown that keeps running
between polls and moves up only as much as the new figures demand.
"""

from __future__ import annotations

import time
from typing import Any

from lelp.progress import candidate_words, stage_words

__all__ = ["SteadyEta", "candidate_words", "describe"]


def describe(progress: dict[str, Any] | None, status: str | None = None) -> str:
    """The stage a job is in, in plain words (the progress bar's description; ``lelp.progress.stage_words``)."""
    progress = progress or {}
    if status in ("succeeded", "failed", "cancelled"):
        return status
    stage = progress.get("stage") or ("queued" if status in (None, "queued") else "starting")
    return stage_words(stage, progress.get("message"), candidate=progress.get("candidate"),
                       candidates=progress.get("candidates"), candidate_name=progress.get("candidate_name"),
                       epoch=progress.get("epoch"))


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
