"""The progress record every long stage reports, and the cancel check it honours.

Plain callables keep the library free of any queue or web code: the CLI draws a
progress bar from them, the worker writes them to the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lelp.errors import JobCancelled


@dataclass(frozen=True)
class Progress:
    stage: str  # "load" | "extract" | "augment" | "fit_projector" | "train" | "evaluate" | "save"
    step: int = 0
    total_steps: int = 0  # the same name as the job's ``progress.total_steps`` in the API
    epoch: int | None = None
    loss: float | None = None
    message: str | None = None
    # the held-out (validation) score of the epoch just finished, on the report that ends it
    val_score: float | None = None


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def report(callback: ProgressCallback | None, progress: Progress) -> None:
    if callback is not None:
        callback(progress)


def check_cancelled(should_cancel: CancelCheck | None) -> None:
    """Raise JobCancelled when the caller asked to stop."""
    if should_cancel is not None and should_cancel():
        raise JobCancelled("the job was cancelled")
