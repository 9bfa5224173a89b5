"""The sweeper thread: runs the recovery sweep (``app.services.recovery``) inside the worker.

Why in the worker: a worker that is alive is the one process sure to be able to re-run
what another one left; several workers sweeping at once is safe (each requeue is one
conditional UPDATE). This module keeps only the thread; the rules live in the service.
"""

from __future__ import annotations

import logging
import threading

from app.services.recovery import sweep
from app.settings import Settings

log = logging.getLogger("lelp.worker.sweeper")


class SweeperThread:
    """Runs ``sweep`` every ``sweep_interval_s`` inside the worker process (started on ``worker_ready``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lelp-sweeper", daemon=True)

    def _run(self) -> None:
        interval = float(self.settings.sweep_interval_s)
        while not self._stop.wait(interval):
            try:
                sweep(self.settings)
            except Exception:  # a database or broker blip: try again next round
                log.warning("sweep failed", exc_info=True)

    def start(self) -> SweeperThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
