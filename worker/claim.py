"""A delivery's claim on its job: the token every write of this delivery is fenced by.

``job_states.claim`` hands each delivery a fresh token. A worker cut off from the database
past ``heartbeat_stale_s`` is requeued by a sweep (its token dropped) and another delivery
takes the job; when the first comes back, its writes change nothing (each UPDATE names the
token), it learns it lost the claim, and stops without touching the store paths the new
holder uses (checkpoints and the artifact live under paths keyed by the token). ``ClaimLost``
unwinds the library's training loop from whichever callback noticed first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from app.db import job_states
from app.db.session import session_scope

log = logging.getLogger("lelp.worker")
T = TypeVar("T")


def retrying(write: Callable[[], T], deadline: float) -> T:
    """Run a database unit of work until it answers: a database restarting must not cost the job.

    Safe to repeat because each write is conditional (on the claim, or on the job's state);
    past ``deadline`` (the claim would be stale by then anyway) the last error is raised.
    """
    pause = 0.5
    while True:
        try:
            return write()
        except DBAPIError:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("the database did not answer; retrying in %.1f s", pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


class ClaimLost(Exception):  # noqa: N818 - a state, like JobCancelled
    """This delivery no longer holds its job: another one runs it, or the sweep requeued it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id}: this delivery lost its claim; another delivery runs the job")
        self.job_id = job_id


class Claim:
    """The job id and this delivery's token, and whether a write has found the claim gone."""

    def __init__(self, url: str, job_id: str, token: str, patience_s: float = 0.0) -> None:
        self.url, self.job_id, self.token = url, job_id, token
        self.patience_s = patience_s  # how long a checkpoint promotion waits for the database
        self._lost = threading.Event()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def saw(self, held: bool) -> None:
        """Record what a fenced write found (False: the claim is gone for good)."""
        if not held:
            self._lost.set()

    def check(self) -> None:
        """Raise ``ClaimLost`` once any write found the claim gone (called between training steps)."""
        if self._lost.is_set():
            raise ClaimLost(self.job_id)

    def beat(self) -> bool:
        """Beat the heartbeat under this claim; False (and ``lost``) when another delivery holds the job."""
        with session_scope(self.url) as session:
            held = job_states.heartbeat(session, self.job_id, self.token)
        self.saw(held)
        return held

    def promote_checkpoint(self, uri: str) -> tuple[bool, str | None]:
        """Point the job at this claim's checkpoint folder; (won, the folder it replaced)."""

        def promote() -> tuple[bool, str | None]:
            with session_scope(self.url) as session:
                return job_states.promote_checkpoint(session, self.job_id, self.token, uri)

        won, previous = retrying(promote, time.monotonic() + self.patience_s)
        self.saw(won)
        return won, previous
