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
    results, refused = [], []
    candidates = candidates_for(config)
    for i, cand in enumerate(candidates):
        ckpt = Path(checkpoint_dir) / f"{i:02d}-{cand.name}.pt" if checkpoint_dir else None
        try:
            with _timed(seconds, "train"):
                results.append(job.train_candidate(cand, ckpt, on_checkpoint))
        except ConfigError as exc:
            # A search goes on without a candidate the data cannot support (e.g. a class the
            # teacher never predicts has no rows to split); a single chosen config fails loudly.
            if len(candidates) == 1:
                raise
            refused.append({**effective_hyperparameters(config, cand), "error": exc.message})
    if not results:
        raise ConfigError("no candidate could be trained: " + "; ".join(r["error"] for r in refused))
    if not distributed.is_main():  # the other ranks' share ends with training
        return DistillResult(str(out_dir), {}, resumed_from_epoch=max(r.train.resumed_from_epoch for r in results))
    best = max(results, key=lambda r: (r.validation_score, -AUTO_METHOD_RANK.get(r.candidate.method, 9)))
    with _timed(seconds, "baseline"):  # what the teacher bought: the same kind on the labels alone
        baseline = job.train_baseline()
    report(progress, Progress(stage="evaluate", message=f"evaluating {best.candidate.name}"))
    with _timed(seconds, "evaluate"):
        metrics = job.evaluate(best, results, baseline)
    metrics["candidates"] += refused
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
