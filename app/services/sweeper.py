"""The sweeper thread: runs the recovery sweep (``app.services.recovery``) in a long-lived process.

Every worker runs one (started on ``worker_ready``): a live worker is the one process sure
to be able to re-run what another one left. Every API process runs one too
(``LELP_SWEEP_IN_API``): API replicas are the steadiest processes of a deployment, so a job
owed its message is sent again even while every worker is down. Any number may sweep at
once (each change is one conditional UPDATE). This module keeps only the thread; the rules
live in the service.
"""

from __future__ import annotations

import logging
import threading
import time

from app.services.recovery import sweep
from app.settings import Settings

log = logging.getLogger("lelp.sweeper")


class SweeperThread:
    """Runs ``sweep`` at start and then every ``sweep_interval_s`` (a daemon thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lelp-sweeper", daemon=True)
        self._failed_at = float("-inf")  # when a sweep last found the database unreachable

    def requeues_running(self) -> bool:
        """Whether running jobs may be judged by their heartbeats now.

        While the database was down no worker could beat, so every running job looks stale the
        moment it is back; judging them then would requeue jobs whose workers are alive. A
        sweeper waits until the database has answered it for ``heartbeat_stale_s``: a live
        worker has beaten again by then, a dead one has not.
        """
        return time.monotonic() - self._failed_at >= self.settings.heartbeat_stale_s

    def _run(self) -> None:
        interval = float(self.settings.sweep_interval_s)
        audited_at = float("-inf")
        while True:
            try:
                audit = time.monotonic() - audited_at >= self.settings.broker_audit_interval_s
                if audit:
                    audited_at = time.monotonic()
                sweep(self.settings, requeue_running=self.requeues_running(), audit_broker=audit)
            except Exception:  # a database or broker blip: try again next round
                self._failed_at = time.monotonic()
                log.warning("sweep failed", exc_info=True)
            if self._stop.wait(interval):
                return

    def start(self) -> SweeperThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
