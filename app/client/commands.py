"""The ``lelp`` client verbs: one per API operation, over HTTP with ``LelpClient``.

``teachers``, ``base-models``, ``datasets``, ``jobs`` and ``models`` each have ``list``,
``show`` and (where the API has one) ``delete``, beside their own verbs (``upload``,
``submit``, ``cancel``, ``predict`` ...). Every job field is an option of ``jobs submit``,
with the API's defaults. Configured by ``LELP_API_URL`` and ``LELP_API_KEY``.

Output is for people by default (a table for a list, ``field value`` lines for one
resource, one line for an action: ``app.client.render``) and the API's full JSON objects
with ``--json``, for scripts (``gh``/``kubectl``-style). An error is one line on stderr,
``error: <code>: <message>``: exit 2 for a user's mistake (a usage error, any 4xx answer, a
missing file), exit 1 when the server or the network failed or a followed job did not succeed.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Self

import typer

from app.client import render
from app.client.http import DOWNLOAD_FORMATS, ApiError, LelpClient
from app.client.stages import SteadyEta, describe
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


EXIT_USER_ERROR = 2  # the user's mistake: fix the command (click's usage errors exit 2 too)
EXIT_FAILURE = 1  # the server, the network or the job failed: the same command may work later
# Client-side ApiError codes (status 0) that are the user's mistake, not the network's.
LOCAL_USER_ERRORS = frozenset({"not_found", "invalid_option"})


def fail(code: str, message: str, exit_code: int = EXIT_USER_ERROR) -> typer.Exit:
    typer.echo(f"error: {code}: {message}", err=True)
    return typer.Exit(exit_code)


def api_exit_code(exc: ApiError) -> int:
    """2 for what the user can fix (a 4xx answer, a path that is not there), 1 otherwise."""
    if 400 <= exc.status < 500 or (exc.status == 0 and exc.code in LOCAL_USER_ERRORS):
        return EXIT_USER_ERROR
    return EXIT_FAILURE


def cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line on stderr and exit 2 (user's mistake) or 1 (server, network); never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise fail(exc.code, exc.message, api_exit_code(exc)) from None
        except SQLAlchemyError as exc:
            raise fail("database_error", f"{str(exc).splitlines()[0]} (check LELP_DATABASE_URL)",
                       EXIT_FAILURE) from None
        except FileNotFoundError as exc:
            raise fail("file_not_found", f"{exc.filename or exc}: no such file or directory") from None
        except OSError as exc:
            raise fail("os_error", str(exc)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def client() -> LelpClient:
    return LelpClient(os.environ.get("LELP_API_URL"), os.environ.get("LELP_API_KEY"))


def show(body: Any) -> None:
    """The API's object(s) as JSON on stdout: what ``--json`` prints."""
    typer.echo(json.dumps(body, indent=2, default=str))


AsJson = Annotated[bool, typer.Option("--json", help="Print the API's full JSON object(s) (for scripts) "
                                                     "instead of a table or a summary.")]


def output(body: Any, as_json: bool, for_people: Callable[[Any], None]) -> None:
    """``--json``: the object(s) whole; otherwise what ``for_people`` draws (app.client.render)."""
    if as_json:
        show(body)
    else:
        for_people(body)


def say(line: str) -> Callable[[Any], None]:
    return lambda _body: typer.echo(line)


def _crud(group: typer.Typer, noun: str, lister: str, getter: str, deleter: str | None) -> Callable[..., None]:
    """``list``, ``show`` and ``delete`` for one resource, calling the client methods named; returns ``show``."""

    @group.command("list", help=f"List your {noun}s, newest first (a table; --json for the full objects).")
    @cli_errors
    def list_(limit: Limit = 20, after: After = None, as_json: AsJson = False) -> None:
        with client() as c:
            output(getattr(c, lister)(limit=limit, after=after), as_json, lambda page: render.table(noun, page))

    @group.command("show", help=f"Show one {noun} (--json for the full object).")
    @cli_errors
    def show_(resource_id: Id, as_json: AsJson = False) -> None:
        with client() as c:
            output(getattr(c, getter)(resource_id), as_json, lambda body: render.details(noun, body))

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


def _teacher_line(body: dict) -> str:
    return (f"uploaded teacher {body['id']} ({body.get('name')}): {body.get('architecture')}, labels "
            f"{render.labels(body.get('labels'), limit=8)}, {render.count(body.get('parameters'))} parameters")


@teachers_app.command("upload")
@cli_errors
def teachers_upload(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A HF model directory (packed on the fly) or a "
                                                              ".tar.gz/.zip of one.")],
    name: Name = None,
    text_pairs: Annotated[bool, typer.Option("--text-pairs", help="The classifier reads (text, text_pair) "
                                                                 "inputs, e.g. NLI.")] = False,
    as_json: AsJson = False,
) -> None:
    """Upload a teacher classifier; prints its id, labels and size."""
    with client() as c:
        body = c.upload_teacher(path, name=name, text_pairs=text_pairs)
    output(body, as_json, lambda b: typer.echo(_teacher_line(b)))


@base_models_app.command("upload")
@cli_errors
def base_models_upload(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A pretrained HF model directory or a .tar.gz/.zip "
                                                              "of one (no classification head needed).")],
    name: Name = None,
    as_json: AsJson = False,
) -> None:
    """Upload a pretrained encoder; name it in `jobs submit --student-base ID`."""
    with client() as c:
        body = c.upload_base_model(path, name=name)
    output(body, as_json, lambda b: typer.echo(
        f"uploaded base model {b['id']} ({b.get('name')}): {b.get('architecture')}, "
        f"{render.count(b.get('parameters'))} parameters; use it with --student-base {b['id']}"))


def _dataset_line(body: dict) -> str:
    counts = body.get("label_counts") or {}
    labelled = (f"{body.get('labelled_rows')} labelled ({', '.join(f'{k}: {v}' for k, v in counts.items())})"
                if body.get("labelled_rows") else "unlabelled (transfer data: the teacher labels it)")
    return f"uploaded dataset {body['id']} ({body.get('name')}): {body.get('rows')} rows, {labelled}"


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
    as_json: AsJson = False,
) -> None:
    """Upload and validate a dataset; prints its row and label counts."""
    with client() as c:
        body = c.upload_dataset(file, text_column=text_column, text_pair_column=text_pair_column,
                                label_column=label_column or None, name=name)
    output(body, as_json, lambda b: typer.echo(_dataset_line(b)))


# --- jobs ---------------------------------------------------------------------------------------


def _count_or_auto(value: str | None, option: str, what: str) -> int | str | None:
    """``--subclasses`` / ``--augment``: a whole number or ``auto`` (None: the server's default)."""
    if value is None or value == "auto":
        return value
    if value.isdigit():
        return int(value)
    raise fail("invalid_option", f"{option} must be {what} or 'auto', got {value!r}")


Wait = Annotated[bool, typer.Option("--wait", help="Follow the job to its end with one progress bar, then "
                                                   "print a one-line summary.")]


@jobs_app.command("submit")
@cli_errors
def jobs_submit(
    teacher: Annotated[str, typer.Option(metavar="ID", help="Teacher id (tch_...).")],
    train: Annotated[str, typer.Option(metavar="ID", help="Training dataset id (ds_...).")],
    eval_: Annotated[str | None, typer.Option(
        "--eval", metavar="ID", help="Evaluation dataset id; default: 10% of the train rows are held out.")] = None,
    validation: Annotated[str | None, typer.Option(
        "--validation", metavar="ID", help="Validation dataset id: rows like the traffic to serve (best epoch, "
        "temperature, cascade thresholds); default: 10% of the train rows.")] = None,
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
    augment: Annotated[str | None, typer.Option(metavar="K", help="Teacher-scored variants per training row, or "
                                                "'auto' (small sets only; 0: none).", show_default="auto")] = None,
    patience: Annotated[int | None, typer.Option(metavar="N", help="Epochs without a better validation score "
                                                 "before training stops.")] = None,
    device: Annotated[str, typer.Option(metavar="DEVICE", help=f"{spoken_list(DEVICE_CHOICES)} (gpu needs a live "
                                                               "GPU worker).")] = "auto",
    idempotency_key: Annotated[str | None, typer.Option(metavar="KEY", help="Retry-safe submission key: the "
                                                        "same key and options return the same job.")] = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="A name for the job (lists show it).")] = None,
    min_speedup: Annotated[float | None, typer.Option(metavar="X", help="--student auto: the least CPU speed-up "
                                                      "over the teacher.", show_default="100")] = None,
    webhook_url: Annotated[str | None, typer.Option(metavar="URL", help="POSTed the job's final state, signed "
                                                    "(a host the server allows).")] = None,
    wait: Wait = False,
    as_json: AsJson = False,
) -> None:
    """Submit a distillation job (every field of POST /v1/jobs is an option)."""
    hyper = {"subclasses": _count_or_auto(subclasses, "--subclasses", "a positive integer"), "beta": beta,
             "tau": tau, "alpha": alpha, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
             "max_length": max_length, "seed": seed, "patience": patience,
             "augment": _count_or_auto(augment, "--augment", "a whole number of variants per row")}
    spec: str | dict = student if min_speedup is None else {"kind": student, "min_speedup": min_speedup}
    with client() as c:
        job = c.create_job(teacher, train, eval_dataset_id=eval_, validation_dataset_id=validation,
                           method=method, student=spec,
                           student_base=student_base, device=device, hyperparameters=hyper,
                           idempotency_key=idempotency_key, webhook_url=webhook_url, name=name)
        if not wait:
            output(job, as_json, lambda j: typer.echo(render.job_summary(j)))
            return
        follow(c, job["id"], as_json)


@jobs_app.command("list")
@cli_errors
def jobs_list(
    status: Annotated[str | None, typer.Option(metavar="STATUS", help="Only jobs in this status: "
                                               f"{spoken_list([s.value for s in JobStatus])}.")] = None,
    limit: Limit = 20,
    after: After = None,
    as_json: AsJson = False,
) -> None:
    """List your jobs, newest first: status, method, student, accuracy, % of the teacher, duration."""
    with client() as c:
        output(c.list_jobs(status=status, limit=limit, after=after), as_json, lambda page: render.table("job", page))


@jobs_app.command("show")
@cli_errors
def jobs_show(job_id: Id, wait: Wait = False, as_json: AsJson = False) -> None:
    """Show a job: status, stage, result, error, model id (--wait follows it to its end)."""
    with client() as c:
        if wait:
            follow(c, job_id, as_json)
            return
        output(c.get_job(job_id), as_json, lambda body: render.details("job", body))


jobs_app.command("get", help="Same as `jobs show`.")(jobs_show)
jobs_app.command("status", help="Same as `jobs show`.")(jobs_show)


@jobs_app.command("cancel")
@cli_errors
def jobs_cancel(job_id: Id, as_json: AsJson = False) -> None:
    """Cancel a job (at once if queued; at the trainer's next check if running)."""
    with client() as c:
        job = c.cancel_job(job_id)
    output(job, as_json, lambda j: typer.echo(
        f"{j['id']} {j['status']}" + (" (cancel requested: it stops at the worker's next check)"
                                      if j.get("cancel_requested") and j["status"] != "cancelled" else "")))


def _events_table(page: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, header_style="bold")
    for title in ("AT", "EVENT", "MESSAGE"):
        grid.add_column(title, overflow="fold")
    for event in page.get("data") or []:
        message = event.get("message") or ""
        stage = (event.get("data") or {}).get("stage") if event.get("type") == "stage" else None
        if stage:  # internal stage and candidate names (extract, kd-t1) in plain words
            message = describe({"stage": stage, "message": message,
                                "candidate_name": message if stage == "fit_projector" else None}, "running")
        grid.add_row(str(event.get("at", ""))[:19].replace("T", " "), event.get("type", ""), message)
    Console(highlight=False).print(grid)
    if page.get("has_more") and page.get("next_cursor"):
        typer.echo(f"more: --after {page['next_cursor']}")


@jobs_app.command("events")
@cli_errors
def jobs_events(job_id: Id, limit: Annotated[int, typer.Option(metavar="N", help="Page size.")] = 100,
                after: Annotated[str | None, typer.Option(metavar="CURSOR", help="next_cursor of the previous "
                                                                                 "page.")] = None,
                as_json: AsJson = False) -> None:
    """Show a job's events (stages, attempts, requeues)."""
    with client() as c:
        output(c.job_events(job_id, limit=limit, after=after), as_json, _events_table)


@jobs_app.command("wait")
@cli_errors
def jobs_wait(job_id: Id, as_json: AsJson = False) -> None:
    """Follow a job with one progress bar, then print a one-line summary; exits 1 unless it succeeds."""
    with client() as c:
        follow(c, job_id, as_json)


Dest = Annotated[Path, typer.Argument(metavar="DEST", help="File or directory.")]


@jobs_app.command("report")
@cli_errors
def jobs_report(job_id: Id, dest: Dest = Path(".")) -> None:
    """Save a job's report page (HTML; live progress while it runs) and print where it went."""
    with client() as c:
        typer.echo(str(c.save_report(job_id, dest)))


def _columns():  # noqa: ANN202
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Clock(ProgressColumn):
        def render(self, task):  # noqa: ANN001, ANN202
            origin = task.fields.get("origin")
            return Text(render.duration(time.monotonic() - origin) if origin is not None else "")

    class Eta(ProgressColumn):
        def render(self, task):  # noqa: ANN001, ANN202
            eta: SteadyEta | None = task.fields.get("eta")
            left = eta.left() if eta is not None else None
            if task.finished:
                return Text("")
            return Text("ETA " + (render.duration(left) if left is not None else "--"))

    return Clock(), Eta()


class JobProgressBar:
    """One rich progress bar for the whole job, fed with polled job bodies (``wait_job(on_progress=...)``).

    Its description is the stage in plain words ("training student 2/3 (LELP, 2 sub-classes per
    class), epoch 3", ``app.client.stages.describe``); its fraction is the worker's overall
    fraction across stages and candidates (it never goes back); its clock counts from the
    job's start on this machine's clock and its ETA counts down between polls (``SteadyEta``).
    """

    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        clock, eta = _columns()
        # On stderr: stdout carries the summary (or --json's final job), for scripts.
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), clock, eta,
                             console=Console(stderr=True), transient=False, refresh_per_second=4)
        self.eta = SteadyEta()
        self._task = self._bar.add_task(job_id, total=100, origin=time.monotonic(), eta=self.eta)
        self.job_id = job_id
        self.completed = 0.0
        self.description = ""

    def __enter__(self) -> Self:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def update(self, job: dict) -> None:
        progress = job.get("progress") or {}
        status = job["status"]
        fraction = progress.get("overall_fraction")
        if fraction is None:  # a worker from before overall fractions: the stage's own
            fraction = progress.get("fraction") if progress.get("stage") == "train" else None
        done = 100.0 if status == "succeeded" else 100.0 * float(fraction or 0.0)
        self.completed = max(self.completed, done)  # one bar: it never goes back
        if status in ("succeeded", "failed", "cancelled"):
            self.eta.finish()
        else:
            self.eta.update(progress.get("overall_eta_s"))
        self.description = describe(progress, status)
        fields: dict[str, Any] = {}
        seconds = render.job_seconds(job)
        if seconds is not None:  # the clock shows the job's time so far, not this command's
            fields["origin"] = time.monotonic() - seconds
        self._bar.update(self._task, completed=self.completed, description=self.description, **fields)


def follow(c: LelpClient, job_id: str, as_json: bool = False) -> None:
    """Wait for a job with a progress bar; print its summary (or JSON); exit 1 unless it succeeded."""
    try:
        with JobProgressBar(job_id) as bar:
            job = c.wait_job(job_id, on_progress=bar.update)
    except KeyboardInterrupt:  # only the waiting stops: say so, and how to go on
        typer.echo(f"interrupted: {job_id} goes on; `lelp jobs wait {job_id}` follows it again, "
                   f"`lelp jobs cancel {job_id}` stops it", err=True)
        raise typer.Exit(130) from None
    output(job, as_json, lambda j: typer.echo(render.job_summary(j)))
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise fail(error.get("code", job["status"]), error.get("message", f"the job ended {job['status']}"),
                   EXIT_FAILURE)


# --- models -------------------------------------------------------------------------------------


models_app.command("get", help="Same as `models show`.")(models_show)


@models_app.command("predict")
@cli_errors
def models_predict(
    model_id: Id,
    texts: Annotated[list[str], typer.Argument(metavar="TEXT", help="Texts to classify.")],
    pair: Annotated[list[str] | None, typer.Option(metavar="TEXT", help="For a pair classifier: the second text "
                                                   "of each input, once per TEXT, in order.")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Answer on the model's int8 ONNX export.")] = False,
    as_json: AsJson = False,
) -> None:
    """Classify TEXTs with a distilled model: the label and every class's probability."""
    inputs: list[str] | list[dict] = list(texts)
    if pair:
        if len(pair) != len(texts):
            raise fail("invalid_option", f"{len(texts)} texts but {len(pair)} --pair values: give one per text")
        inputs = [{"text": t, "text_pair": p} for t, p in zip(texts, pair, strict=True)]
    with client() as c:
        output(c.predict(model_id, inputs, quantize="int8" if int8 else None), as_json, render.prediction_table)


@models_app.command("download")
@cli_errors
def models_download(
    model_id: Id,
    dest: Dest = Path("."),
    format: Annotated[str, typer.Option(metavar="FORMAT", help=f"{spoken_list(list(DOWNLOAD_FORMATS))}: the "
                                        "student directory (tar.gz), its checked ONNX package (zip), or that "
                                        "package with int8 weights.")] = "artifact",
) -> None:
    """Download a model: its artifact, or its ONNX package (fp32 or int8); prints the file written."""
    if format not in DOWNLOAD_FORMATS:
        raise fail("invalid_option", f"--format must be {spoken_list(list(DOWNLOAD_FORMATS))}, got {format!r}")
    with client() as c:
        typer.echo(str(c.download(model_id, dest, format)))


@models_app.command("report")
@cli_errors
def models_report(model_id: Id, dest: Dest = Path(".")) -> None:
    """Save a model's report.html (self-contained) and print where it went."""
    with client() as c:
        typer.echo(str(c.save_report(model_id, dest)))


@models_app.command("cascade")
@cli_errors
def models_cascade(
    model_id: Id,
    target: Annotated[float | None, typer.Option(metavar="X", help="Fraction of the teacher's accuracy to reach, "
                                                 "e.g. 0.99.")] = None,
    max_deferred: Annotated[float | None, typer.Option(metavar="X", help="Deferral budget: at most this share "
                                                       "of rows to the teacher.")] = None,
    keep_traffic: Annotated[bool, typer.Option(help="Keep deferred rows with the teacher's answers for "
                                               "`models redistil`.")] = False,
    max_kept_rows: Annotated[int | None, typer.Option(metavar="N", help="Bound on kept rows.")] = None,
    off: Annotated[bool, typer.Option("--off", help="Serve the student alone again.")] = False,
) -> None:
    """Serve a model as a cascade: the student first, the rows it is unsure of to the teacher."""
    with client() as c:
        if off:
            show(c.disable_cascade(model_id)["cascade"])
            return
        if (target is None) == (max_deferred is None):
            raise fail("invalid_option", "give one of --target and --max-deferred (or --off)")
        show(c.set_cascade(model_id, target_accuracy=target, max_deferred_fraction=max_deferred,
                           keep_traffic=keep_traffic, max_kept_rows=max_kept_rows)["cascade"])


@models_app.command("redistil")
@cli_errors
def models_redistil(model_id: Id) -> None:
    """Distil a model again with the traffic its cascade kept added to the training rows (prints the job)."""
    with client() as c:
        show(c.redistil(model_id))


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
