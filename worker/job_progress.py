"""A running job's progress: what it reports, the heartbeat and the cancel check.

Each turns a library callback into as few database writes as will do: progress at most
about once a second (it doubles as the heartbeat), a background beat during long silent
stages (model loading, one long batch), and the cancel flag read at most once a second.
Each write is its own short unit of work (``session_scope``): no session stays open while
the job trains. The state changes themselves are ``app.db.job_states``.

Every write is fenced by the delivery's ``Claim``: once one finds the claim gone (the sweep
requeued the job while this worker was cut off), the next callback raises ``ClaimLost``
and training stops. A database that does not answer (restarting) costs a skipped write,
never the job: the next write, or the next beat, tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Self

from sqlalchemy.exc import DBAPIError

from app.db import job_states
from app.db import repositories as repo
from app.db.session import session_scope
from lelp.progress import overall_fraction
from worker.claim import Claim, ClaimLost

log = logging.getLogger("lelp.worker")

PROGRESS_INTERVAL_S = 1.0
CANCEL_CHECK_INTERVAL_S = 1.0
HISTORY_POINTS = 500  # per-epoch loss points kept in a job's progress (bounded: 1000-epoch jobs exist)

ETA_MIN_FRACTION = 0.03  # below this an overall ETA is a guess: none is reported
ETA_MIN_SECONDS = 3.0


class ProgressWriter:
    """Turns the library's progress callbacks into at most one database write a second.

    A stage change is written at once (and logged as an event) so that short stages show;
    every write also beats the heartbeat the sweeper watches. When training starts past
    epoch 1 the library resumed from a checkpoint: a ``resumed`` event with
    ``{"epoch": N}`` (epochs already done) shows that a redelivered job did not start over.
    """

    def __init__(self, url: str, job_id: str, interval_s: float | None = None, claim: Claim | None = None) -> None:
        self.url = url
        self.job_id = job_id
        self.claim = claim
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self._last_write = 0.0
        self._stage: str | None = None
        self._stage_started = time.monotonic()
        self.resumed_epochs: list[int] = []
        self.history: list[dict[str, Any]] = []  # loss per (candidate, epoch) so far: the live report's curve
        self._candidate: str | None = None
        self._position: tuple[int | None, int | None] = (None, None)  # (1-based index, count) of candidates
        self._overall = 0.0  # never goes back: a second teacher pass or a requeue repeats a band
        self._began = time.monotonic()

    def _overall_progress(self, progress: Any, fraction: float | None, now: float) -> tuple[float, float | None]:
        """The job's overall fraction so far and the seconds its pace says are left (None too early)."""
        overall = overall_fraction(progress.stage, fraction, *self._position)
        if overall is not None:
            self._overall = max(self._overall, overall)
        spent = now - self._began
        eta = None
        if self._overall >= ETA_MIN_FRACTION and spent >= ETA_MIN_SECONDS:
            eta = spent * (1 - self._overall) / self._overall
        return self._overall, eta

    def record_resume(self, epoch: int) -> None:
        """Log that training continued after ``epoch`` finished epochs (read from a checkpoint)."""
        self.resumed_epochs.append(epoch)
        try:
            with session_scope(self.url) as session:
                repo.add_event(session, self.job_id, "resumed", f"resumed from the checkpoint of epoch {epoch}",
                               {"epoch": epoch})
        except DBAPIError:
            log.warning("the resume of job %s was not recorded (database unreachable)", self.job_id)

    def _track_history(self, progress: Any) -> None:
        """Every report (throttled or not) updates the running epoch's loss; the last is its mean.

        The report that ends an epoch carries its validation score: it joins that epoch's point."""
        if progress.stage == "fit_projector":
            self._candidate = progress.message
            if getattr(progress, "candidates", None):
                self._position = (progress.candidate, progress.candidates)
        elif progress.stage == "train" and getattr(progress, "val_score", None) is not None:
            last = self.history[-1] if self.history else None
            if last is not None and (last["candidate"], last["epoch"]) == (self._candidate, progress.epoch):
                last["val_score"] = round(float(progress.val_score), 6)
        elif progress.stage == "train" and progress.epoch is not None and progress.loss is not None:
            point = {"candidate": self._candidate, "epoch": int(progress.epoch),
                     "train_loss": round(float(progress.loss), 6)}
            last = self.history[-1] if self.history else None
            if last is not None and (last["candidate"], last["epoch"]) == (point["candidate"], point["epoch"]):
                self.history[-1] = point
            elif len(self.history) < HISTORY_POINTS:
                self.history.append(point)

    def __call__(self, progress: Any) -> None:
        if self.claim is not None:
            self.claim.check()
        now = time.monotonic()
        self._track_history(progress)
        new_stage = progress.stage != self._stage
        if not new_stage and now - self._last_write < self.interval_s:
            return
        if new_stage:
            self._stage, self._stage_started = progress.stage, now
            # The first report of a training run comes after its first step: epoch N+1 means
            # the library loaded the checkpoint of epoch N.
            if progress.stage == "train" and progress.epoch and progress.epoch > 1:
                self.record_resume(progress.epoch - 1)
        fraction = (progress.step / progress.total_steps) if progress.total_steps else None
        elapsed = now - self._stage_started
        eta = elapsed * (1 - fraction) / fraction if fraction and fraction > 0 else None
        overall, overall_eta = self._overall_progress(progress, fraction, now)
        body = {"stage": progress.stage, "epoch": progress.epoch, "step": progress.step,
                "total_steps": progress.total_steps, "fraction": fraction, "loss": progress.loss,
                "eta_s": round(eta, 1) if eta is not None else None, "message": progress.message,
                "overall_fraction": round(overall, 4),
                "overall_eta_s": round(overall_eta, 1) if overall_eta is not None else None,
                "candidate": self._position[0], "candidates": self._position[1], "candidate_name": self._candidate,
                "history": list(self.history)}
        token = self.claim.token if self.claim is not None else None
        try:
            with session_scope(self.url) as session:
                held = job_states.record_progress(session, self.job_id, body, token)
                if new_stage and held:
                    repo.add_event(session, self.job_id, "stage", progress.message or progress.stage,
                                   {"stage": progress.stage})
        except DBAPIError:
            log.warning("progress of job %s not written (database unreachable); the next write retries",
                        self.job_id, exc_info=True)
            return
        self._last_write = now
        if self.claim is not None:
            self.claim.saw(held)
            self.claim.check()


class CancelCheck:
    """Reads the job's cancel flag at most once a second (the trainer asks every few steps).

    It is also where a lost claim stops training: the heartbeat thread may be the one that
    found out, and the trainer calls this between steps.
    """

    def __init__(self, url: str, job_id: str, interval_s: float | None = None, claim: Claim | None = None) -> None:
        self.url, self.job_id, self.claim = url, job_id, claim
        self.interval_s = CANCEL_CHECK_INTERVAL_S if interval_s is None else interval_s
        self._last = 0.0
        self._answer = False

    def __call__(self) -> bool:
        if self.claim is not None:
            self.claim.check()
        now = time.monotonic()
        if not self._answer and now - self._last >= self.interval_s:
            try:
                with session_scope(self.url) as session:
                    self._answer = job_states.is_cancel_requested(session, self.job_id)
            except DBAPIError:
                log.warning("cancel flag of job %s not read (database unreachable)", self.job_id)
            self._last = now
        return self._answer


class Heartbeat:
    """A daemon thread that beats while a stage reports nothing (model loading, a long batch).

    Beats under the delivery's claim; the first beat that finds the claim gone marks it lost
    (the next progress report or cancel check stops training) and the thread ends.
    """

    def __init__(self, url: str, job_id: str, interval_s: float, claim: Claim | None = None) -> None:
        self.url, self.job_id, self.interval_s, self.claim = url, job_id, interval_s, claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _beat(self) -> bool:
        if self.claim is not None:
            return self.claim.beat()
        with session_scope(self.url) as session:
            job_states.heartbeat(session, self.job_id)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self._beat():
                    log.warning("job %s: the claim is gone (requeued while this worker was away); stopping",
                                self.job_id)
                    return
            except Exception:  # a database blip must not kill the job; the next beat retries
                log.warning("heartbeat of %s failed", self.job_id, exc_info=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


__all__ = ["CancelCheck", "ClaimLost", "Heartbeat", "ProgressWriter"]
