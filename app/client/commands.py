"""The ``lelp`` client verbs: one per API operation, over HTTP with ``LelpClient``.

``teachers``, ``base-models``, ``datasets``, ``jobs`` and ``models`` each have ``list``,
``show`` and (where the API has one) ``delete``, beside their own verbs (``upload``,
``submit``, ``cancel``, ``predict`` ...). Every job field is an option of ``jobs submit``,
with the API's defaults. Configured by ``LELP_API_URL`` and ``LELP_API_KEY``; output is the
API's JSON on stdout; an error is one line, ``error: <code>: <message>``, and exit 1.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Self

import typer

from app.client.http import ApiError, LelpClient
from app.vocabulary import (
    DEFAULT_METHOD,
    DEFAULT_STUDENT_KIND,
    DEVICE_CHOICES,
    METHOD_CHOICES,
    STUDENT_CHOICES,
    JobStatus,
    spoken_list,
)
from lelp.config import STUDENT_DEFAULTS

PLAIN = {"no_args_is_help": True, "rich_markup_mode": None}
teachers_app = typer.Typer(help="Teachers (sequence classifiers) on the server.", **PLAIN)
base_models_app = typer.Typer(help="Base models (pretrained encoders students start from) on the server.", **PLAIN)
datasets_app = typer.Typer(help="Datasets on the server.", **PLAIN)
jobs_app = typer.Typer(help="Distillation jobs on the server.", **PLAIN)
models_app = typer.Typer(help="Distilled models on the server.", **PLAIN)
GROUPS = {"teachers": teachers_app, "base-models": base_models_app, "datasets": datasets_app, "jobs": jobs_app,
          "models": models_app}

Id = Annotated[str, typer.Argument(metavar="ID", help="The resource's id.", show_default=False)]
Limit = Annotated[int, typer.Option(metavar="N", min=1, max=100, help="Page size (1-100).")]
After = Annotated[str | None, typer.Option(metavar="CURSOR", help="next_cursor of the previous page.")]
Name = Annotated[str | None, typer.Option(metavar="NAME", help="Display name (default: the file name).")]
# The library's benchmarked defaults, read from the torch-free ``lelp.config`` (one copy).
PER_STUDENT_DEFAULTS = {name: {kind: defaults[name] for kind, defaults in STUDENT_DEFAULTS.items()}
                        for name in ("epochs", "learning_rate", "batch_size", "tau")}


def per_student(name: str) -> str:
    return ", ".join(f"{kind} {value:g}" for kind, value in PER_STUDENT_DEFAULTS[name].items())


def fail(code: str, message: str) -> typer.Exit:
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
            raise fail(exc.code, exc.message) from None
        except SQLAlchemyError as exc:
            raise fail("database_error", f"{str(exc).splitlines()[0]} (check LELP_DATABASE_URL)") from None
        except OSError as exc:
            raise fail("os_error", str(exc)) from None

    return wrapper


def client() -> LelpClient:
    return LelpClient(os.environ.get("LELP_API_URL"), os.environ.get("LELP_API_KEY"))


def show(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, default=str))


def _crud(group: typer.Typer, noun: str, lister: str, getter: str, deleter: str | None) -> Callable[..., None]:
    """``list``, ``show`` and ``delete`` for one resource, calling the client methods named; returns ``show``."""

    @group.command("list", help=f"List your {noun}s, newest first.")
    @cli_errors
    def list_(limit: Limit = 20, after: After = None) -> None:
        with client() as c:
            show(getattr(c, lister)(limit=limit, after=after))

    @group.command("show", help=f"Show one {noun}.")
    @cli_errors
    def show_(resource_id: Id) -> None:
        with client() as c:
            show(getattr(c, getter)(resource_id))

    if deleter is not None:
        @group.command("delete", help=f"Delete a {noun} and its files.")
        @cli_errors
        def delete_(resource_id: Id) -> None:
            with client() as c:
                getattr(c, deleter)(resource_id)
            typer.echo(f"deleted {resource_id}")

    return show_


_crud(teachers_app, "teacher", "list_teachers", "get_teacher", "delete_teacher")
_crud(base_models_app, "base model", "list_base_models", "get_base_model", "delete_base_model")
_crud(datasets_app, "dataset", "list_datasets", "get_dataset", "delete_dataset")
models_show = _crud(models_app, "model", "list_models", "get_model", "delete_model")


# --- teachers, base models, datasets ------------------------------------------------------------


@teachers_app.command("upload")
@cli_errors
def teachers_upload(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A HF model directory (packed on the fly) or a "
                                                              ".tar.gz/.zip of one.")],
    name: Name = None,
    text_pairs: Annotated[bool, typer.Option("--text-pairs", help="The classifier reads (text, text_pair) "
                                                                 "inputs, e.g. NLI.")] = False,
) -> None:
    """Upload a teacher classifier."""
    with client() as c:
        show(c.upload_teacher(path, name=name, text_pairs=text_pairs))


@base_models_app.command("upload")
@cli_errors
def base_models_upload(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A pretrained HF model directory or a .tar.gz/.zip "
                                                              "of one (no classification head needed).")],
    name: Name = None,
) -> None:
    """Upload a pretrained encoder; name it in `jobs submit --student-base ID`."""
    with client() as c:
        show(c.upload_base_model(path, name=name))


@datasets_app.command("upload")
@cli_errors
def datasets_upload(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV, TSV, JSONL or Parquet file.")],
    text_column: Annotated[str, typer.Option(metavar="COLUMN", help="Column with the text.")] = "text",
    text_pair_column: Annotated[str | None, typer.Option(metavar="COLUMN", help="Column with the second text "
                                                                                "of a pair.")] = None,
    label_column: Annotated[str, typer.Option(metavar="COLUMN", help="Label column; '' for unlabelled "
                                                                     "(transfer) data.")] = "label",
    name: Name = None,
) -> None:
    """Upload and validate a dataset; prints its row and label counts."""
    with client() as c:
        show(c.upload_dataset(file, text_column=text_column, text_pair_column=text_pair_column,
                              label_column=label_column or None, name=name))


# --- jobs ---------------------------------------------------------------------------------------


def _subclasses(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if value.isdigit():
        return int(value)
    raise fail("invalid_option", f"--subclasses must be a positive integer or 'auto', got {value!r}")


@jobs_app.command("submit")
@cli_errors
def jobs_submit(
    teacher: Annotated[str, typer.Option(metavar="ID", help="Teacher id (tch_...).")],
    train: Annotated[str, typer.Option(metavar="ID", help="Training dataset id (ds_...).")],
    eval_: Annotated[str | None, typer.Option(
        "--eval", metavar="ID", help="Evaluation dataset id; default: 10% of the train rows are held out.")] = None,
    method: Annotated[str, typer.Option(
        metavar="METHOD", help=f"{spoken_list(METHOD_CHOICES)}.")] = DEFAULT_METHOD,
    student: Annotated[str, typer.Option(metavar="KIND", help=f"{spoken_list(STUDENT_CHOICES)}.")
                       ] = DEFAULT_STUDENT_KIND,
    student_base: Annotated[str | None, typer.Option(metavar="ID", help="Base model or teacher id the student "
                                                     "starts from (encoder_mlp needs one), or a URI under the "
                                                     "server's allowed roots.")] = None,
    subclasses: Annotated[str | None, typer.Option(metavar="S", help="Sub-classes per class, or 'auto' to search.",
                                                   show_default="2")] = None,
    beta: Annotated[float | None, typer.Option(metavar="X", help="Sub-class temperature.", show_default="1")] = None,
    tau: Annotated[float | None, typer.Option(metavar="X", help="Teacher temperature.",
                                              show_default=per_student("tau"))] = None,
    alpha: Annotated[float | None, typer.Option(metavar="X", help="Weight of the hard-label loss (0-1).",
                                                show_default="0")] = None,
    epochs: Annotated[int | None, typer.Option(metavar="N", help="Training epochs.",
                                               show_default=per_student("epochs"))] = None,
    learning_rate: Annotated[float | None, typer.Option(metavar="X", help="Learning rate.",
                                                        show_default=per_student("learning_rate"))] = None,
    batch_size: Annotated[int | None, typer.Option(metavar="N", help="Batch size.",
                                                   show_default=per_student("batch_size"))] = None,
    max_length: Annotated[int | None, typer.Option(metavar="N", help="Longest input in tokens.",
                                                   show_default="128")] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed.", show_default="0")] = None,
    augment: Annotated[int | None, typer.Option(metavar="K", help="Teacher-scored variants per training row.",
                                                show_default="0")] = None,
    patience: Annotated[int | None, typer.Option(metavar="N", help="Epochs without a better validation score "
                                                 "before training stops.")] = None,
    device: Annotated[str, typer.Option(metavar="DEVICE", help=f"{spoken_list(DEVICE_CHOICES)} (gpu needs a live "
                                                               "GPU worker).")] = "auto",
    idempotency_key: Annotated[str | None, typer.Option(metavar="KEY", help="Retry-safe submission key: the "
                                                        "same key and options return the same job.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end with a progress bar.")] = False,
) -> None:
    """Submit a distillation job (every field of POST /v1/jobs is an option)."""
    hyper = {"subclasses": _subclasses(subclasses), "beta": beta, "tau": tau, "alpha": alpha, "epochs": epochs,
             "learning_rate": learning_rate, "batch_size": batch_size, "max_length": max_length, "seed": seed,
             "augment": augment, "patience": patience}
    with client() as c:
        job = c.create_job(teacher, train, eval_dataset_id=eval_, method=method, student=student,
                           student_base=student_base, device=device, hyperparameters=hyper,
                           idempotency_key=idempotency_key)
        if not wait:
            show(job)
            return
        follow(c, job["id"])


@jobs_app.command("list")
@cli_errors
def jobs_list(
    status: Annotated[str | None, typer.Option(metavar="STATUS", help="Only jobs in this status: "
                                               f"{spoken_list([s.value for s in JobStatus])}.")] = None,
    limit: Limit = 20,
    after: After = None,
) -> None:
    """List your jobs, newest first."""
    with client() as c:
        show(c.list_jobs(status=status, limit=limit, after=after))


@jobs_app.command("show")
@cli_errors
def jobs_show(job_id: Id) -> None:
    """Show a job: status, progress, metrics, error, model id."""
    with client() as c:
        show(c.get_job(job_id))


jobs_app.command("status", help="Same as `jobs show`.")(jobs_show)


@jobs_app.command("cancel")
@cli_errors
def jobs_cancel(job_id: Id) -> None:
    """Cancel a job (at once if queued; at the trainer's next check if running)."""
    with client() as c:
        show(c.cancel_job(job_id))


@jobs_app.command("events")
@cli_errors
def jobs_events(job_id: Id, limit: Annotated[int, typer.Option(metavar="N", help="Page size.")] = 100,
                after: Annotated[str | None, typer.Option(metavar="CURSOR", help="next_cursor of the previous "
                                                                                 "page.")] = None) -> None:
    """Show a job's events (stages, attempts, requeues)."""
    with client() as c:
        show(c.job_events(job_id, limit=limit, after=after))


@jobs_app.command("wait")
@cli_errors
def jobs_wait(job_id: Id) -> None:
    """Follow a job with a progress bar; exits 1 unless it succeeds."""
    with client() as c:
        follow(c, job_id)


class JobProgressBar:
    """A rich progress bar fed with polled job bodies (``LelpClient.wait_job(on_progress=...)``)."""

    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

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


def follow(c: LelpClient, job_id: str) -> None:
    with JobProgressBar(job_id) as bar:
        job = c.wait_job(job_id, on_progress=bar.update)
    show(job)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise fail(error.get("code", job["status"]), error.get("message", f"the job ended {job['status']}"))


# --- models -------------------------------------------------------------------------------------


models_app.command("get", help="Same as `models show`.")(models_show)


@models_app.command("predict")
@cli_errors
def models_predict(
    model_id: Id,
    texts: Annotated[list[str], typer.Argument(metavar="TEXT", help="Texts to classify.")],
    pair: Annotated[list[str] | None, typer.Option(metavar="TEXT", help="For a pair classifier: the second text "
                                                   "of each input, once per TEXT, in order.")] = None,
) -> None:
    """Classify TEXTs with a distilled model."""
    inputs: list[str] | list[dict] = list(texts)
    if pair:
        if len(pair) != len(texts):
            raise fail("invalid_option", f"{len(texts)} texts but {len(pair)} --pair values: give one per text")
        inputs = [{"text": t, "text_pair": p} for t, p in zip(texts, pair, strict=True)]
    with client() as c:
        show(c.predict(model_id, inputs))


@models_app.command("download")
@cli_errors
def models_download(model_id: Id, dest: Annotated[Path, typer.Argument(metavar="DEST", help="File or "
                                                                       "directory.")] = Path(".")) -> None:
    """Download a model's artifact (tar.gz of the student directory)."""
    with client() as c:
        typer.echo(str(c.download_artifact(model_id, dest)))


METAVARS = {"int": "N", "integer": "N", "float": "X", "path": "PATH"}


def plain_metavars(command: Any) -> None:
    """Give every option without a metavar a plain one (``--epochs N``, ``--teacher PATH``).

    typer 0.29 labels them ``<int>``, ``<str>``; the library's verbs (``lelp.cli``) set none.
    """
    for param in getattr(command, "params", []):  # typer vendors click: test the kind, not the class
        if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None  # "PATH", not "PATH <path>"
        if param.param_type_name == "option" and not param.is_flag and param.metavar is None:
            desc = getattr(param, "type_descriptor", None)
            if desc is not None and getattr(desc, "is_path", False):
                kind = "path"
            elif hasattr(param, "bare_type"):
                kind = param.bare_type()
            else:
                kind = getattr(getattr(param, "type", None), "name", "text")
            param.metavar = METAVARS.get(kind, "TEXT")
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)


def register(app: typer.Typer) -> None:
    for name, group in GROUPS.items():
        app.add_typer(group, name=name)
