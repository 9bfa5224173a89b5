"""The ``lelp`` console script: library verbs, the servers, admin, and HTTP client verbs.

- library verbs (``distill``, ``make-teacher``, ``predict``, ``evaluate``) come from
  ``lelp.cli.register_commands`` and need no service;
- ``serve`` (embedded: API + one worker process on SQLite), ``api`` and ``worker``
  (production processes), ``db upgrade|downgrade|current``, ``admin create-key``;
- client verbs over HTTP (``teachers``, ``datasets``, ``jobs``, ``models``), configured by
  ``LELP_API_URL`` and ``LELP_API_KEY``.

Importing this module loads neither torch nor the worker: heavy imports happen inside
the command that needs them. An API error prints ``error: <code>: <message>`` and exits 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Self

import typer

from app.client import ApiError, LelpClient

app = typer.Typer(help="LELP Distill: distil few-class text classifiers, as a library or a service.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
db_app = typer.Typer(help="Database migrations (the schema comes only from them).", no_args_is_help=True)
admin_app = typer.Typer(help="Administration: API keys.", no_args_is_help=True)
teachers_app = typer.Typer(help="Teachers on the server.", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets on the server.", no_args_is_help=True)
jobs_app = typer.Typer(help="Distillation jobs on the server.", no_args_is_help=True)
models_app = typer.Typer(help="Distilled models on the server.", no_args_is_help=True)
for _sub, _name in ((db_app, "db"), (admin_app, "admin"), (teachers_app, "teachers"), (datasets_app, "datasets"),
                    (jobs_app, "jobs"), (models_app, "models")):
    app.add_typer(_sub, name=_name)

try:  # the library's verbs; the service commands work even if that module is broken
    from lelp.cli import register_commands
except ImportError as _exc:  # pragma: no cover - only while the library is incomplete
    print(f"warning: library commands unavailable: {_exc}", file=sys.stderr)
else:
    register_commands(app)


def _fail(code: str, message: str) -> typer.Exit:
    typer.echo(f"error: {code}: {message}", err=True)
    return typer.Exit(1)


def cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line and exit 1 for anything a user or an unreachable server causes; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise _fail(exc.code, exc.message) from None
        except SQLAlchemyError as exc:
            raise _fail("database_error", str(exc).splitlines()[0]) from None
        except OSError as exc:
            raise _fail("os_error", str(exc)) from None

    return wrapper


def _client() -> LelpClient:
    return LelpClient(os.environ.get("LELP_API_URL"), os.environ.get("LELP_API_KEY"))


def _print(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, default=str))


# --- servers -------------------------------------------------------------------------------


@app.command()
@cli_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default LELP_DATA_DIR or ./.lelp).")] = None,
) -> None:
    """Run the embedded service: API + one worker process on SQLite and a local broker."""
    from app.embedded import serve as run

    run(host=host, port=port, data_dir=data_dir)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run only the API (production: set LELP_DATABASE_URL, LELP_BROKER_URL, LELP_ARTIFACT_URL)."""
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info",
                proxy_headers=True)


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues: cpu, gpu or both.")] = "cpu,gpu",
    concurrency: Annotated[int, typer.Option(help="Jobs run at once (one process each).")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork (time limits enforced) or solo.")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run only a Celery worker (replaces this process, so signals reach Celery directly)."""
    from app.embedded import child_env, worker_command
    from app.settings import get_settings

    command = worker_command(queues=queues, concurrency=concurrency, pool=pool, loglevel=loglevel)
    os.execve(command[0], command, child_env(get_settings()))


# --- database and admin --------------------------------------------------------------------------


@db_app.command("upgrade")
@cli_errors
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default head) on LELP_DATABASE_URL."""
    from app.db.migrate import upgrade
    from app.settings import get_settings

    upgrade(get_settings().database_url, revision)


@db_app.command("downgrade")
@cli_errors
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision (base drops everything).")]) -> None:
    """Revert migrations down to REVISION."""
    from app.db.migrate import downgrade
    from app.settings import get_settings

    downgrade(get_settings().database_url, revision)


@db_app.command("current")
@cli_errors
def db_current() -> None:
    """Print the database's current revision."""
    from app.db.migrate import current
    from app.settings import get_settings

    typer.echo(current(get_settings().database_url) or "(empty)")


@admin_app.command("create-key")
@cli_errors
def create_key(tenant: Annotated[str, typer.Option(help="Tenant name (created if new).")]) -> None:
    """Create an API key for TENANT and print only the key (it is stored hashed)."""
    from app.db.session import session_scope
    from app.security import create_api_key
    from app.settings import get_settings

    with session_scope(get_settings().database_url) as session:
        key = create_api_key(session, tenant)
    typer.echo(key)


# --- client verbs -----------------------------------------------------------------------------


@teachers_app.command("upload")
@cli_errors
def teachers_upload(
    path: Annotated[Path, typer.Argument(help="A HF model directory (packed on the fly) or a .tar.gz/.zip.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Upload a teacher classifier."""
    with _client() as client:
        _print(client.upload_teacher(path, name=name))


@teachers_app.command("list")
@cli_errors
def teachers_list() -> None:
    """List your teachers."""
    with _client() as client:
        _print(client.list_teachers())


@datasets_app.command("upload")
@cli_errors
def datasets_upload(
    file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file.")],
    text_column: Annotated[str, typer.Option(help="Column with the text.")] = "text",
    text_pair_column: Annotated[str | None, typer.Option(help="Column with the second text of a pair.")] = None,
    label_column: Annotated[str, typer.Option(help="Label column; empty for unlabelled data.")] = "label",
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Upload and validate a dataset; prints its row and label counts."""
    with _client() as client:
        _print(client.upload_dataset(file, text_column=text_column, text_pair_column=text_pair_column,
                                     label_column=label_column or None, name=name))


@jobs_app.command("submit")
@cli_errors
def jobs_submit(
    teacher: Annotated[str, typer.Option(help="Teacher id.")],
    train: Annotated[str, typer.Option(help="Training dataset id.")],
    eval_: Annotated[str | None, typer.Option("--eval", help="Evaluation dataset id.")] = None,
    method: Annotated[str, typer.Option(help="lelp, kd, ce, fitnet, random_subclass, ...")] = "lelp",
    student: Annotated[str, typer.Option(help="static, ngram, encoder_mlp or transformer.")] = "static",
    subclasses: Annotated[str | None, typer.Option(help="Sub-classes per class, or auto.")] = None,
    beta: Annotated[float | None, typer.Option(help="Sub-class temperature.")] = None,
    tau: Annotated[float | None, typer.Option(help="Teacher temperature.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Weight of the hard-label loss.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or gpu (gpu jobs need a GPU worker).")] = "auto",
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe submission key.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end with a progress bar.")] = False,
) -> None:
    """Submit a distillation job."""
    hyper = {"subclasses": int(subclasses) if subclasses and subclasses.isdigit() else subclasses,
             "beta": beta, "tau": tau, "alpha": alpha, "epochs": epochs, "seed": seed}
    with _client() as client:
        job = client.create_job(teacher, train, eval_dataset_id=eval_, method=method, student=student,
                                device=device, hyperparameters=hyper, idempotency_key=idempotency_key)
        if not wait:
            _print(job)
            return
        _follow(client, job["id"])


@jobs_app.command("status")
@cli_errors
def jobs_status(job_id: str) -> None:
    """Show a job: status, progress, metrics, error, model id."""
    with _client() as client:
        _print(client.get_job(job_id))


@jobs_app.command("list")
@cli_errors
def jobs_list(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 20,
    after: Annotated[str | None, typer.Option(help="Cursor from the previous page.")] = None,
) -> None:
    """List your jobs, newest first."""
    with _client() as client:
        _print(client.list_jobs(status=status, limit=limit, after=after))


@jobs_app.command("cancel")
@cli_errors
def jobs_cancel(job_id: str) -> None:
    """Cancel a job (at once if queued; at the trainer's next check if running)."""
    with _client() as client:
        _print(client.cancel_job(job_id))


@jobs_app.command("events")
@cli_errors
def jobs_events(job_id: str) -> None:
    """Show a job's events (stages, attempts, requeues)."""
    with _client() as client:
        _print(client.job_events(job_id))


@jobs_app.command("wait")
@cli_errors
def jobs_wait(job_id: str) -> None:
    """Follow a job with a progress bar; exits 1 unless it succeeds."""
    with _client() as client:
        _follow(client, job_id)


class JobProgressBar:
    """A rich progress bar fed with polled job bodies (``LelpClient.wait_job(on_progress=...)``)."""

    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        # On stderr: stdout carries the final job as JSON, for scripts.
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._task = self._bar.add_task(job_id, total=100)
        self.job_id = job_id

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def update(self, job: dict) -> None:
        progress = job.get("progress") or {}
        stage = progress.get("stage") or ""
        epoch = f" epoch {progress['epoch']}" if progress.get("epoch") else ""
        fraction = progress.get("fraction")
        done = 100 if job["status"] == "succeeded" else (fraction or 0) * 100
        self._bar.update(self._task, completed=done, description=f"{self.job_id[:16]} {job['status']} {stage}{epoch}")


def _follow(client: LelpClient, job_id: str) -> None:
    with JobProgressBar(job_id) as bar:
        job = client.wait_job(job_id, on_progress=bar.update)
    _print(job)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise _fail(error.get("code", job["status"]), error.get("message", f"the job ended {job['status']}"))


@models_app.command("get")
@cli_errors
def models_get(model_id: str) -> None:
    """Show a model and its metrics."""
    with _client() as client:
        _print(client.get_model(model_id))


@models_app.command("predict")
@cli_errors
def models_predict(model_id: str, texts: Annotated[list[str], typer.Argument(help="Texts to classify.")]) -> None:
    """Classify TEXTS with a distilled model."""
    with _client() as client:
        _print(client.predict(model_id, texts))


@models_app.command("download")
@cli_errors
def models_download(model_id: str,
                    dest: Annotated[Path, typer.Argument(help="File or directory.")] = Path(".")) -> None:
    """Download a model's artifact (tar.gz of the student directory)."""
    with _client() as client:
        typer.echo(str(client.download_artifact(model_id, dest)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
