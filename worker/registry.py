"""The worker registry: each Celery worker records itself (node name, queues, devices) and beats.

The API reads the ``workers`` table to refuse at submit a job no live worker could run
(``device: gpu`` with no GPU worker alive) instead of accepting it and failing it later.
A worker beats every ``heartbeat_stale_s / 4`` seconds (1-30 s); one whose beat is older
than ``heartbeat_stale_s`` counts as gone, so a SIGKILLed worker drops out on its own.
Devices are found without touching CUDA (GPU workers must not initialise it before forking).
"""

from __future__ import annotations

import logging
import os
import threading

from app.db import repositories as repo
from app.db.session import session_scope
from app.settings import Settings

log = logging.getLogger("lelp.worker.registry")

NVIDIA_PROC_DIR = "/proc/driver/nvidia/gpus"
# Tests only: another directory to read the driver's GPU list from, so a worker on a machine
# without a GPU registers as a GPU worker (its jobs still run on the CPU: torch sees no CUDA).
FAKE_GPU_DIR_ENV = "LELP_TEST_NVIDIA_PROC_DIR"


def visible_gpus(proc_dir: str | None = None) -> list[str]:
    """CUDA devices this process may use: the driver's GPU list, cut by ``CUDA_VISIBLE_DEVICES``."""
    proc_dir = proc_dir or os.environ.get(FAKE_GPU_DIR_ENV) or NVIDIA_PROC_DIR
    try:
        count = len(os.listdir(proc_dir))
    except OSError:
        count = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for part in (p.strip() for p in visible.split(",")):
            if not part or part == "-1":  # CUDA stops at the first invalid id
                break
            ids.append(part)
        count = min(count, len(ids))
    return [f"cuda:{i}" for i in range(count)]


def worker_devices() -> list[str]:
    return ["cpu", *visible_gpus()]


class WorkerRegistration:
    """Records this worker in ``workers`` and beats in a daemon thread until stopped (row removed)."""

    def __init__(self, settings: Settings, hostname: str, queues: list[str], devices: list[str] | None = None) -> None:
        self.settings, self.hostname, self.queues = settings, hostname, sorted(queues)
        self.devices = worker_devices() if devices is None else devices
        self.interval_s = max(1.0, min(30.0, settings.heartbeat_stale_s / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lelp-worker-registry", daemon=True)

    def beat(self) -> None:
        with session_scope(self.settings.database_url) as session:
            repo.beat_worker(session, self.hostname, self.queues, self.devices)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # a database blip: the next beat retries
                log.warning("worker heartbeat failed", exc_info=True)

    def start(self) -> WorkerRegistration:
        self.beat()
        self._thread.start()
        log.info("worker %s registered: queues %s, devices %s", self.hostname, self.queues, self.devices)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            with session_scope(self.settings.database_url) as session:
                repo.remove_worker(session, self.hostname)
        except Exception:  # the row then simply goes stale
            log.warning("could not remove worker %s from the registry", self.hostname, exc_info=True)
