"""The ``lelp`` console script: the app floor's commands plus the two that start workers.

The console script is the composition root, so it lives on the top floor: ``app.admin_commands``
holds every verb that needs no worker (library verbs, ``api``, ``db``, ``admin``, the
client verbs); this module adds ``worker`` and ``serve`` (API + one worker child), the
only commands that must name the worker's Celery app. ``app`` never imports or names
``worker``; ``worker.embedded`` is handed the worker command line as an argument.
``python -m worker.cli`` is the same as ``lelp``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.admin_commands import app
from app.admin_commands import main as _run
from app.client.commands import cli_errors

CELERY_APP = "worker.celery_app:celery_app"


def worker_command(queues: str = "cpu,gpu", concurrency: int = 1, pool: str = "prefork",
                   loglevel: str = "INFO", hostname: str | None = None) -> list[str]:
    """The ``celery worker`` command line shared by ``lelp serve`` and ``lelp worker``."""
    command = [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
               "-Q", queues, "-c", str(concurrency), f"--pool={pool}", "-l", loglevel]
    if hostname:
        command += ["-n", hostname]
    return command


@app.command()
@cli_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default LELP_DATA_DIR or ./.lelp).")] = None,
) -> None:
    """Run the embedded service: API + one worker process on SQLite and a local broker."""
    from worker.embedded import serve as run

    run(host=host, port=port, data_dir=data_dir, worker_command=worker_command(hostname="embedded@%h"))


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: cpu, gpu or both.")] = "cpu,gpu",
    concurrency: Annotated[int, typer.Option(help="Jobs run at once (one process each).")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork (time limits enforced) or solo.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    gpus: Annotated[str | None, typer.Option(
        help="GPU indices, e.g. 0,1: one worker process per GPU, pinned with CUDA_VISIBLE_DEVICES.")] = None,
    gpus_per_worker: Annotated[int, typer.Option(
        help="With --gpus: GPUs per worker process (2 for jobs with hyperparameters.gpus: 2).")] = 1,
    name: Annotated[str | None, typer.Option(
        help="Celery node name, e.g. cpu1@%h (default celery@<hostname>): unique per worker, "
             "so give one to each worker sharing a machine.")] = None,
) -> None:
    """Run only a Celery worker (replaces this process, so signals reach Celery directly).

    With --gpus: one Celery worker per GPU (group), each with --concurrency 1, started and
    supervised by this process, which never touches CUDA (worker.gpu_workers).
    """
    from functools import partial

    from app.settings import get_settings
    from worker.embedded import child_env

    if gpus is None:
        command = worker_command(queues=queues, concurrency=concurrency, pool=pool, loglevel=loglevel, hostname=name)
        os.execve(command[0], command, child_env(get_settings()))
    from worker.gpu_workers import gpu_groups, gpu_workers, supervise

    try:
        groups = gpu_groups(gpus, gpus_per_worker)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    workers = gpu_workers(groups, partial(worker_command, pool=pool, loglevel=loglevel), queues)
    raise typer.Exit(supervise(workers, child_env(get_settings())))


def main() -> None:
    _run()


if __name__ == "__main__":
    main()
