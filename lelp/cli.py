"""The library's command line: ``distill``, ``make-teacher``, ``predict``, ``evaluate``, ``report``, ``export``.

``register_commands`` adds them to any typer app, so the service's ``lelp`` script
offers them beside ``serve`` and the client verbs. Imports of torch happen inside the
commands: ``lelp --help`` stays fast. A user's mistake is one line on stderr and exit 2.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lelp.errors import LELPError
from lelp.method.registry import DEFAULT_METHOD, METHOD_CHOICES
from lelp.progress import Progress
from lelp.students.registry import DEFAULT_STUDENT_KIND, STUDENT_CHOICES

EXIT_USER_ERROR = 2
METHOD_HELP = "|".join(METHOD_CHOICES)


def user_errors(fn):
    """Turn LELPError (and a Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LELPError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


class ProgressBars:
    """One tqdm bar for the whole run, fed by the library's Progress callbacks.

    Its fraction is ``lelp.progress.overall_fraction`` (stages and candidates in one 0-100%,
    never going back), its description the stage in plain words (``stage_words``): the same
    bar `lelp jobs wait` draws for a job on the service. (The name is kept for callers.)
    """

    def __init__(self, enabled: bool = True, whole_job: bool = True, training: str | None = None):
        # whole_job=False (make-teacher: one training run): the bar is the stage's own fraction;
        # ``training`` names that run's training epochs ("fine-tuning the teacher"), not a student's
        self.enabled, self.whole_job, self.bar = enabled, whole_job, None
        self.training = training
        self.position: tuple[int | None, int | None] = (None, None)
        self.candidate_name: str | None = None
        self.done = 0.0

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        from lelp.progress import overall_fraction, stage_words

        if p.stage == "fit_projector":
            self.candidate_name = p.message
            if p.candidates:
                self.position = (p.candidate, p.candidates)
        if self.bar is None:
            self.bar = tqdm(total=100, file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0.2,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")
        fraction = p.step / p.total_steps if p.total_steps else None
        overall = overall_fraction(p.stage, fraction, *self.position) if self.whole_job else fraction
        if overall is not None:
            self.done = max(self.done, 100 * overall)
        self.bar.n = self.done
        if self.training and p.stage == "train":
            words = self.training + (f", epoch {p.epoch}" if p.epoch else "")
        else:
            words = stage_words(p.stage, p.message, candidate=self.position[0], candidates=self.position[1],
                                candidate_name=self.candidate_name, epoch=p.epoch)
        self.bar.set_description_str(words, refresh=False)
        if p.loss is not None:
            self.bar.set_postfix(loss=f"{p.loss:.4f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _quiet_transformers() -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _auto_or(cast, option: str, expected: str):
    """A parser for an option that takes 'auto' or a number (``cast``), failing in one line."""
    def parse(value: str):
        if value == "auto":
            return value
        try:
            return cast(value)
        except ValueError:
            raise LELPError(f"--{option} must be {expected} or 'auto', got {value!r}") from None
    return parse


_augment = _auto_or(int, "augment", "an integer")
_alpha = _auto_or(float, "alpha", "a number within [0, 1]")


def _subclasses(value: str) -> int | str:
    if value in ("auto", "default"):
        return value
    try:
        return int(value)
    except ValueError:
        raise LELPError(f"--subclasses must be an integer or 'auto', got {value!r}") from None


def print_report(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"student ({metrics['method']}) vs teacher, {metrics['eval_rows']} eval rows")
    for col in ("", "accuracy", "macro-F1", "parameters", "size (MB)", "sentences/s (CPU)"):
        table.add_column(col, justify="right")

    def fmt(x, spec):
        return "-" if x is None else format(x, spec)

    for name in ("student", "teacher"):
        m = metrics[name]
        table.add_row(name, fmt(m.get("accuracy"), ".4f"), fmt(m.get("macro_f1"), ".4f"),
                      fmt(m.get("parameters"), ","), fmt((m.get("size_bytes") or 0) / 1e6, ".1f"),
                      fmt(m.get("sentences_per_second"), ",.0f"))
    console = Console(stderr=False)
    console.print(table)
    console.print(f"agreement with the teacher: {metrics['agreement']:.4f}; chosen: {metrics['chosen']}")
    from lelp.report.analysis import candidate_score, validation_name

    training = metrics.get("training") or {}
    if training.get("best_epoch"):
        console.print(f"best epoch {training['best_epoch']} of {training['epochs_run']} run "
                      f"({validation_name(metrics)} {training['best_val_score']:.4f})")
    from lelp.evaluate import keeps_line
    from lelp.report.analysis import baseline_line

    for line in (keeps_line(metrics), baseline_line(metrics)):
        if line:
            console.print(line, markup=False)
    if len(metrics.get("candidates", [])) > 1:
        for c in metrics["candidates"]:
            score = candidate_score(c)
            outcome = f"refused: {c['error']}" if "error" in c else (
                f"{validation_name(metrics)} {score:.4f}" if score is not None else "not scored")
            console.print(f"  candidate {c['method']} S={c['subclasses']} beta={c['beta']} tau={c['tau']}: {outcome}",
                          markup=False)


@user_errors
def distill_command(
    teacher: Annotated[Path, typer.Option(help="Hugging Face sequence-classification directory")],
    train: Annotated[Path, typer.Option(help="training/transfer data (CSV, TSV, JSONL, Parquet)")],
    out: Annotated[Path, typer.Option(help="directory for the student artifact")],
    eval: Annotated[Path | None, typer.Option(help="evaluation data; default: 10% of the labelled train rows")] = None,
    validation: Annotated[Path | None, typer.Option(
        help="validation data like the traffic to serve (best epoch, choices, temperature, cascade thresholds); "
             "default: 10% of the train rows")] = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: Annotated[str, typer.Option(help="'' for unlabelled transfer data")] = "label",
    eval_label_column: Annotated[str | None, typer.Option(
        help="label column of the --eval file; default: --label-column (an eval file needs labels)")] = None,
    validation_label_column: Annotated[str | None, typer.Option(
        help="label column of the --validation file; default: --label-column; '' for none (scored against the "
             "teacher's answers)")] = None,
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = DEFAULT_METHOD,
    student: Annotated[str, typer.Option(help="|".join(STUDENT_CHOICES) + " (auto: the most accurate "
                                         "fast kind at >= --min-speedup x the teacher)")] = DEFAULT_STUDENT_KIND,
    min_speedup: Annotated[float, typer.Option(help="--student auto: the least CPU speed-up over the teacher")
                           ] = 100.0,
    student_base: Annotated[Path | None, typer.Option(
        help="pretrained encoder for encoder_mlp/transformer, or whose vocabulary a static student takes")] = None,
    subclasses: Annotated[str, typer.Option(help="sub-classes per class S, or 'auto'", show_default="2")] = "default",
    beta: float | None = None,
    tau: float | None = None,
    alpha: Annotated[str, typer.Option(help="weight of the true labels' loss: 'auto' (the kind's benchmarked "
                                             "weight where >= 90% of the rows have labels, cnn 0.5; x the "
                                             "labelled share below) or 0-1")] = "auto",
    epochs: Annotated[int | None, typer.Option(help="default: a budget that fits the data")] = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    max_length: int = 128,
    seed: int = 0,
    device: str = "auto",
    augment: Annotated[str, typer.Option(help="teacher-scored variants per training row: 'auto' (small sets "
                                               "only, from the data size) or K (0 = none)")] = "auto",
    patience: Annotated[int | None, typer.Option(help="epochs without a better validation score to stop")] = None,
    gpus: Annotated[int, typer.Option(help="GPUs to train on with DDP (torchrun); > 1: transformer only")] = 1,
    cache_dir: Annotated[Path | None, typer.Option(help="teacher-feature cache")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(help="resume from / write checkpoints here")] = None,
    quiet: bool = False,
) -> None:
    """Distil a teacher into a small student; writes the artifact and OUT/metrics.json."""
    _quiet_transformers()
    from lelp.pipeline import DistillConfig, distill

    config = DistillConfig(
        teacher_dir=str(teacher), train_path=str(train), eval_path=str(eval) if eval else None,
        validation_path=str(validation) if validation else None, validation_label_column=validation_label_column,
        text_column=text_column, text_pair_column=text_pair_column, label_column=label_column or None,
        eval_label_column=eval_label_column or None, method=method, student=student,
        student_base=str(student_base) if student_base else None,
        subclasses=_subclasses(subclasses), beta=beta, tau=tau, alpha=_alpha(alpha), epochs=epochs,
        learning_rate=learning_rate, batch_size=batch_size, max_length=max_length, seed=seed, device=device,
        augment=_augment(augment), patience=patience, gpus=gpus, min_speedup=min_speedup)
    bars = ProgressBars(enabled=not quiet)
    try:
        result = distill(config, out, cache_dir=cache_dir or out / ".cache", checkpoint_dir=checkpoint_dir,
                         progress=bars)
    finally:
        bars.close()
    print_report(result.metrics)
    typer.echo(f"student written to {result.artifact_dir}; open {Path(result.artifact_dir) / 'report.html'} "
               "in a browser for the report")


@user_errors
def make_teacher_command(
    base: Annotated[Path, typer.Option(help="pretrained encoder directory, e.g. the shipped MiniLM")],
    train: Annotated[Path, typer.Option(help="labelled training data")],
    out: Annotated[Path, typer.Option(help="where to write the teacher")],
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    labels: Annotated[str | None, typer.Option(help="comma-separated class names the teacher answers with, e.g. "
                                               "negative,positive: one per data label in sorted order (0, 1, ...), "
                                               "or the data's own labels in the order to use")] = None,
    epochs: Annotated[int, typer.Option(help="most epochs; the best on a held-out 10% ships")] = 3,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    max_length: int = 64,
    max_rows: int | None = None,
    patience: Annotated[int, typer.Option(help="epochs without a better held-out score before stopping")] = 1,
    seed: int = 0,
    device: str = "auto",
) -> None:
    """Fine-tune a pretrained encoder into a sequence-classification teacher (best epoch on held-out rows)."""
    _quiet_transformers()
    from lelp.training.make_teacher import TeacherTrainingConfig, make_teacher

    bars = ProgressBars(whole_job=False, training="fine-tuning the teacher")
    try:
        path = make_teacher(base, train, out, config=TeacherTrainingConfig(
            epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
            max_rows=max_rows, seed=seed, patience=patience), text_column=text_column,
            text_pair_column=text_pair_column, label_column=label_column, device=device, progress=bars,
            label_names=labels.split(",") if labels is not None else None)
    finally:
        bars.close()
    import json

    from lelp.training.make_teacher import TEACHER_METRICS

    held = json.loads((path / TEACHER_METRICS).read_text())
    typer.echo(f"held-out accuracy {held['held_out_accuracy']:.4f} on {held['held_out_rows']} rows "
               f"(best epoch {held['best_epoch']} of {held['epochs_run']} run)")
    typer.echo(f"teacher written to {path}")


@user_errors
def predict_command(
    texts: Annotated[list[str], typer.Argument(help="texts to classify")],
    model: Annotated[Path, typer.Option(help="a student artifact or a teacher directory")],
) -> None:
    """Print one JSON object per input: label, score, probabilities."""
    _quiet_transformers()
    from lelp.artifacts import load_predictor

    for record in load_predictor(model).predict(texts):
        typer.echo(json.dumps(record))


@user_errors
def evaluate_command(
    model: Annotated[Path, typer.Option(help="a student artifact or a teacher directory")],
    data: Annotated[Path, typer.Option(help="labelled data file")],
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
) -> None:
    """Accuracy and macro-F1 of a model on a labelled file (JSON on the last line)."""
    _quiet_transformers()
    import numpy as np

    from lelp.artifacts import load_predictor
    from lelp.data.datasets import encode_labels, read_table
    from lelp.errors import DataError
    from lelp.evaluate import classification_metrics

    dataset = read_table(data, text_column=text_column, text_pair_column=text_pair_column,
                         label_column=label_column)
    predictor = load_predictor(model)
    labels = np.asarray(encode_labels(dataset.labels, predictor.labels, source=data.name))
    if not (labels >= 0).any():
        raise DataError(f"{data.name}: no labelled rows to evaluate on", param="label_column")
    probs = predictor.predict_proba(dataset.texts, dataset.text_pairs)
    result = classification_metrics(labels, probs.argmax(1), len(predictor.labels))
    typer.echo(json.dumps(result))


@user_errors
def report_command(
    dir: Annotated[Path, typer.Argument(help="a student artifact written by `lelp distill`")],
    out: Annotated[Path | None, typer.Option(help="where to write the page; default DIR/report.html")] = None,
) -> None:
    """Redraw a student's report.html from its own files (metrics.json, report_data.json): no teacher needed."""
    from lelp.report import write_report

    typer.echo(f"report written to {write_report(dir, out)}")


@user_errors
def export_command(
    model: Annotated[Path, typer.Argument(help="a student artifact directory")],
    out: Annotated[Path, typer.Option(help="a .zip file, or else a directory")],
    format: Annotated[str, typer.Option(help="onnx (the only format so far)")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: onnxruntime dynamic quantization")] = None,
    eval: Annotated[Path | None, typer.Option(help="labelled rows to check the export on (default: a small "
                                                   "built-in probe set, without accuracy)")] = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
) -> None:
    """Export a student to ONNX (class probabilities out), check it on onnxruntime, record the figures."""
    _quiet_transformers()
    from lelp.errors import ConfigError

    if format != "onnx":
        raise ConfigError(f"unknown export format {format!r}; the only one is onnx", param="format")
    from lelp.artifacts import read_manifest
    from lelp.export import export_onnx, record_export
    from lelp.export.check import rows_from_table

    manifest = read_manifest(model)
    rows = None
    if eval is not None:
        rows = rows_from_table(eval, list(manifest["labels"]), text_column=text_column,
                               text_pair_column=text_pair_column, label_column=label_column or None)
    package = export_onnx(model, out, quantize=quantize, rows=rows)
    record_export(model, package)
    typer.echo(json.dumps({"out": str(out), "variant": package["variant"], "check": package["check"]}))


def register_commands(app: typer.Typer) -> None:
    app.command("distill")(distill_command)
    app.command("make-teacher")(make_teacher_command)
    app.command("predict")(predict_command)
    app.command("evaluate")(evaluate_command)
    app.command("report")(report_command)
    app.command("export")(export_command)


def build_app() -> typer.Typer:
    app = typer.Typer(help="LELP: distil few-class text classifiers.", no_args_is_help=True,
                      pretty_exceptions_enable=False, add_completion=False)
    register_commands(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
