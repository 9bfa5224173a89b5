"""``distill()``: one whole distillation job as a plain function (the CLI and the worker call it).

Stages: load -> extract teacher features (cached) -> fit projector / build targets ->
train (checkpoint each epoch, resumable) -> evaluate -> save the artifact.

``method="auto"`` trains KD, LELP and the random-subclass control and keeps the best on
a held-out split of the training data, so a user never gets less than plain KD would
give; ``subclasses="auto"`` searches S, beta and tau the same way. Every candidate's
validation score is reported, the winner's test metrics too.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lelp.config import (
    AUTO_GRID,
    AUTO_METHOD_RANK,
    AUTO_METHODS,
    AUTO_STUDENT,
    AUTO_STUDENT_KINDS,
    DEFAULT_BETA,
    DEFAULT_METHOD,
    DEFAULT_STUDENT,
    DEFAULT_SUBCLASSES,
    STUDENT_DEFAULTS,
    VALIDATION_FRACTION,
    Candidate,
    DistillConfig,
    DistillResult,
    budget_epochs,
    candidates_for,
    effective_hyperparameters,
    validate_config,
)
from lelp.data.datasets import split_rows
from lelp.errors import ConfigError
from lelp.job import DistillJob
from lelp.progress import CancelCheck, Progress, ProgressCallback, report

# The configuration moved to lelp.config and split_rows to lelp.data.datasets (issue 8); these names stay
# importable from here (README: ``from lelp.pipeline import DistillConfig, distill``).
__all__ = ["AUTO_GRID", "AUTO_METHODS", "AUTO_METHOD_RANK", "DEFAULT_BETA", "DEFAULT_METHOD", "DEFAULT_STUDENT",
           "DEFAULT_SUBCLASSES", "STUDENT_DEFAULTS", "VALIDATION_FRACTION", "Candidate", "DistillConfig",
           "DistillResult", "budget_epochs", "candidates_for", "distill", "effective_hyperparameters", "split_rows",
           "validate_config"]

def _json_default(value):
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


@contextmanager
def _timed(seconds: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def _train_kind(job: DistillJob, config: DistillConfig, checkpoint_dir, on_checkpoint, seconds: dict,
                prefix: str = ""):
    """Every candidate (method / sub-class config) of the job's current kind: (best, results, refused)."""
    from lelp.devices import distributed

    results, refused = [], []
    candidates = candidates_for(config)
    for i, cand in enumerate(candidates):
        ckpt = Path(checkpoint_dir) / f"{prefix}{i:02d}-{cand.name}.pt" if checkpoint_dir else None
        try:
            with _timed(seconds, "train"):
                results.append(job.train_candidate(cand, ckpt, on_checkpoint, (i + 1, len(candidates))))
        except ConfigError as exc:
            # A search goes on without a candidate the data cannot support (e.g. a class the
            # teacher never predicts has no rows to split); a single chosen config fails loudly.
            if len(candidates) == 1:
                raise
            refused.append({**job.candidate_hyperparameters(cand), "error": exc.message})
    if not results:
        raise ConfigError("no candidate could be trained: " + "; ".join(r["error"] for r in refused))
    if not distributed.is_main():
        return None, results, refused
    best = max(results, key=lambda r: (r.validation_score, -AUTO_METHOD_RANK.get(r.candidate.method, 9)))
    return best, results, refused


def _student_search(job: DistillJob, config: DistillConfig, checkpoint_dir, on_checkpoint, seconds: dict, progress):
    """``student="auto"``: train every kind of ``AUTO_STUDENT_KINDS`` (each with its own method search),
    time them against the teacher in alternation, keep the best on validation among those at least
    ``min_speedup`` times the teacher's CPU speed (the fastest when none is). Test rows are only read."""
    import tempfile

    per_kind = {}
    for kind in AUTO_STUDENT_KINDS:
        report(progress, Progress(stage="train", message=f"student search: {kind}"))
        job.use_kind(kind)
        best, results, refused = _train_kind(job, job.config, checkpoint_dir, on_checkpoint, seconds, f"{kind}-")
        per_kind[kind] = (best, results, refused)
    with tempfile.TemporaryDirectory(prefix="lelp-search-") as work, _timed(seconds, "search"):
        rows = {}
        for kind, (best, _results, _refused) in per_kind.items():
            job.use_kind(kind)
            rows[kind] = job.describe_candidate(best, Path(work))
        speed = job.time_candidates({kind: row.pop("artifact") for kind, row in rows.items()})
    for kind, row in rows.items():
        row["sentences_per_second"] = speed["models"][kind]["median_sentences_per_second"]
        row["x_teacher"] = speed["models"][kind]["median_x_reference"]
        row["meets_min_speedup"] = row["x_teacher"] >= config.min_speedup
    eligible = [k for k, r in rows.items() if r["meets_min_speedup"]]
    if eligible:
        chosen = max(eligible, key=lambda k: (rows[k]["validation_accuracy"] or 0.0, rows[k]["x_teacher"]))
    else:
        chosen = max(rows, key=lambda k: rows[k]["x_teacher"])
    for kind, row in rows.items():
        row["chosen"] = kind == chosen
    job.use_kind(chosen)
    best, results, refused = per_kind[chosen]
    search = {"min_speedup": config.min_speedup, "chosen": chosen, "floor_met": bool(eligible),
              "candidates": list(rows.values()), "speed": speed}
    return best, results, refused, search


def distill(
    config: DistillConfig,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_checkpoint=None,
) -> DistillResult:
    """Run a whole distillation job and write the student artifact to ``out_dir``.

    With ``config.gpus > 1`` this process starts torchrun and waits (``lelp.devices.ddp_launch``); each
    rank comes back here, trains its share, and rank 0 alone evaluates and saves.
    """
    from lelp.devices import distributed
    from lelp.report import write_report, write_report_data  # matplotlib/Jinja2: only when a job ends

    validate_config(config)
    if config.gpus > 1 and not distributed.active():
        from lelp.devices.ddp_launch import launch

        return launch(config, out_dir, cache_dir=cache_dir, checkpoint_dir=checkpoint_dir, progress=progress,
                      should_cancel=should_cancel, on_checkpoint=on_checkpoint)
    report(progress, Progress(stage="load", message="reading the teacher and the data"))
    job = DistillJob(config, cache_dir=cache_dir, progress=progress, should_cancel=should_cancel)
    seconds: dict[str, float] = {}  # stage -> wall seconds, shown in the report
    with _timed(seconds, "load"):
        job.load()
    with _timed(seconds, "extract"):
        job.extract()
    search = None
    if config.student == AUTO_STUDENT:
        best, results, refused, search = _student_search(job, config, checkpoint_dir, on_checkpoint, seconds,
                                                         progress)
    else:
        best, results, refused = _train_kind(job, job.config, checkpoint_dir, on_checkpoint, seconds)
    if not distributed.is_main():  # the other ranks' share ends with training
        return DistillResult(str(out_dir), {}, resumed_from_epoch=max(r.train.resumed_from_epoch for r in results))
    with _timed(seconds, "baseline"):  # what the teacher bought: the same kind on the labels alone
        baseline = job.train_baseline()
    report(progress, Progress(stage="evaluate", message=f"evaluating {best.candidate.name}"))
    with _timed(seconds, "evaluate"):
        metrics = job.evaluate(best, results, baseline)
    metrics["candidates"] += refused
    if search is not None:
        metrics["student_search"] = search
    report(progress, Progress(stage="save"))
    with _timed(seconds, "save"):
        out = job.save(best, out_dir, metrics)
    metrics["stage_seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    metrics = json.loads(json.dumps(metrics, default=_json_default))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report(progress, Progress(stage="save", message="writing report.html"))
    write_report_data(out, json.loads(json.dumps(job.report_data(best), default=_json_default)))
    write_report(out)
    return DistillResult(str(out), metrics, resumed_from_epoch=max(r.train.resumed_from_epoch for r in results))
