"""``lelp worker --queues gpu --gpus 0,1``: one Celery worker process per GPU, each pinned to it.

A CUDA context made before a fork is broken in the child (Celery issue 3402), so nothing here
touches CUDA, nor imports torch: this process only starts one ``celery worker`` per GPU group
with ``CUDA_VISIBLE_DEVICES`` set in its environment (and ``--concurrency 1``: one job per GPU),
the way open-source GPU services run Celery. Each worker's prefork parent never imports torch
either (``worker.celery_app`` stays light); its one pool child imports torch with the first job
and sees only its own GPU(s) as ``cuda:0..``. ``--gpus-per-worker 2`` gives each process two
GPUs, for jobs with ``hyperparameters.gpus: 2`` (``lelp.devices.ddp_launch``).

This supervisor forwards SIGTERM/SIGINT to every worker (a warm shutdown each) and, when one
worker exits, stops the others and exits with its status, so that the process manager
(compose's ``restart:``, systemd) restarts the set as one.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GPUWorker:
    """One worker process: its command line and the GPUs it is pinned to."""

    devices: str  # the CUDA_VISIBLE_DEVICES value, e.g. "1" or "2,3"
    command: list[str]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        # PCI bus order, so that "1" is the GPU nvidia-smi calls 1
        return {**base, "CUDA_VISIBLE_DEVICES": self.devices, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def gpu_groups(gpus: str, per_worker: int = 1) -> list[str]:
    """``"0,1,2,3"`` with 2 per worker -> ``["0,1", "2,3"]``; ValueError on a malformed list."""
    ids = [part.strip() for part in gpus.split(",") if part.strip()]
    if not ids or not all(part.isdigit() for part in ids):
        raise ValueError(f"--gpus takes GPU indices separated by commas, e.g. 0,1; got {gpus!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"--gpus names a GPU twice: {gpus!r}")
    if per_worker < 1 or len(ids) % per_worker:
        raise ValueError(f"--gpus-per-worker {per_worker} does not divide the {len(ids)} GPU(s) of --gpus")
    return [",".join(ids[i:i + per_worker]) for i in range(0, len(ids), per_worker)]


def gpu_workers(groups: Sequence[str], command: Callable[..., list[str]], queues: str) -> list[GPUWorker]:
    """One worker per group; ``command(queues=, concurrency=, hostname=)`` builds its command line
    (``worker.cli.worker_command``, passed in by ``lelp worker``), named ``gpu<ids>@host`` so each
    shows up on its own."""
    return [GPUWorker(group, command(queues=queues, concurrency=1, hostname=f"gpu{group.replace(',', '-')}@%h"))
            for group in groups]


def supervise(workers: Sequence[GPUWorker], env: dict[str, str], *, grace_s: float = 60.0,
              poll_s: float = 1.0) -> int:
    """Start every worker, wait; the status of the first to exit (the others are stopped then)."""
    processes = [subprocess.Popen(w.command, env=w.env(env)) for w in workers]
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(poll_s)
        first = next(p for p in processes if p.returncode is not None)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in processes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return first.returncode
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
