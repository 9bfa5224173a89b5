"""The job's configuration and result, its candidates, the defaults and the grids: a leaf module.

``lelp.pipeline`` (the stages) and ``lelp.job`` (the state between them) both import it at
the top, so neither imports the other to reach a config type. It imports neither torch nor
the training code (the method vocabulary, ``Method``, is ``lelp.method.registry``, re-exported here
and by ``lelp.method.targets``); ``from lelp.pipeline import DistillConfig, distill`` keeps working.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from lelp.data.splits import HOLD_OUT_FRACTION as VALIDATION_FRACTION  # noqa: F401 (lelp.pipeline's name)
from lelp.errors import ConfigError
from lelp.method.registry import (  # noqa: F401
    AUTO_METHOD_RANK,
    AUTO_METHODS,
    DEFAULT_METHOD,
    DEFAULT_SUBCLASSES,
    SUBCLASS_METHODS,
    Method,
    parse_method,
)
from lelp.students.registry import (  # noqa: F401
    AUTO_STUDENT,
    AUTO_STUDENT_KINDS,
    DEFAULT_MIN_SPEEDUP,
    DEFAULT_STUDENT_KIND,
    KINDS,
    STUDENT_KINDS,
    kinds_where,
)

# Defaults from benchmarks/quality.py (tables in benchmarks/README.md): each student kind's own
# (``lelp.students.registry.KINDS``). No setting showed LELP beating KD by more than its noise,
# so the default method is "auto": KD unless LELP wins on held-out data.
STUDENT_DEFAULTS = {kind: info.defaults for kind, info in KINDS.items()}
# The cnn student (the static table + a convolution): best validation accuracy at >= 100x the
# teacher's CPU speed on SST-2 with 60k transfer rows (kd: 82.9% test, 97.1% of the teacher, vs
# static 81.3% / 95.2%, 3 seeds; benchmarks/README.md). Earlier: static (ngram 92.3% at 60k).
DEFAULT_STUDENT = DEFAULT_STUDENT_KIND
DEFAULT_BETA = 1.0
# subclasses="auto" searches the grid the benchmark gave every sub-class method (4 configs, as
# many as kd's tau grid there: a bigger grid would win on validation noise alone).
AUTO_GRID = [{"subclasses": s, "beta": 1.0, "tau": t} for s in (2, 4) for t in (1.0, 2.0)]


@dataclass(frozen=True)
class DistillConfig:
    teacher_dir: str
    train_path: str
    eval_path: str | None = None
    # rows like the traffic the student will serve (same columns as the train data; labelled or not):
    # they replace the 10% of the train rows held out for validation (best epoch, auto choices, the
    # temperature, cascade thresholds); never trained on, never augmented
    validation_path: str | None = None
    # the validation file's label column; None: label_column; "": none (rows scored against the teacher)
    validation_label_column: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str | None = "label"
    # the eval file's label column; None: the same as label_column (both None: refused, an eval file
    # needs labels; lelp.job.eval_label_column)
    eval_label_column: str | None = None
    method: str = DEFAULT_METHOD
    student: str = DEFAULT_STUDENT
    student_base: str | None = None
    subclasses: int | str = "default"
    beta: float | None = None
    tau: float | None = None
    # the weight of the true labels' loss: "auto" is the kind's labelled_alpha where >= 90% of the fit rows
    # carry labels (cnn: 0.5), that weight times the labelled share below (none labelled: 0, teacher targets
    # only); a number in [0, 1] as given
    alpha: float | str = "auto"
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    max_length: int = 128
    seed: int = 0
    device: str = "auto"
    # teacher-scored variants per training row (lelp.data.augment); 0 = none; "auto": from the data
    # size and the device's budget (lelp.data.augment.auto_variants: small sets only)
    augment: int | str = "auto"
    # epochs without a better validation score before stopping; None = the student's default
    # (with --epochs given: no early stopping, the best epoch still ships)
    patience: int | None = None
    # constructor options of the student, e.g. {"n_features": 2**16, "embedding_dim": 32} for ngram,
    # {"hidden": 512} for encoder_mlp, {"layers": 3} for transformer
    student_options: dict | None = None
    # student="auto": the least speed-up over the teacher (CPU, timed in alternation) a candidate must reach
    min_speedup: float = DEFAULT_MIN_SPEEDUP
    # GPUs one job trains on: > 1 runs the job under torchrun with DDP (lelp.devices.ddp_launch); the
    # transformer student only (the others are too small to gain). Without CUDA the N ranks are
    # gloo processes sharing the CPU, which only tests pay for.
    gpus: int = 1
    # A redistil (issue 22): {"from_model_id", "target", "deferred_before", "kept_rows"}; the job measures
    # its own share deferred at that target (threshold chosen on its validation rows) for the report.
    cascade_reference: dict | None = None


MULTI_GPU_STUDENTS = kinds_where(multi_gpu=True)
MAX_GPUS = 64


@dataclass
class DistillResult:
    artifact_dir: str
    metrics: dict
    resumed_from_epoch: int = 0


@dataclass(frozen=True)
class Candidate:
    """One fully specified training run."""

    method: str
    subclasses: int
    beta: float
    tau: float

    @property
    def name(self) -> str:
        if self.method in SUBCLASS_METHODS:
            return f"{self.method}-S{self.subclasses}-b{self.beta:g}-t{self.tau:g}"
        return f"{self.method}-t{self.tau:g}"


def validate_config(config: DistillConfig) -> None:
    if config.method != "auto":
        parse_method(config.method)
    if config.student not in STUDENT_KINDS and config.student != AUTO_STUDENT:
        raise ConfigError(f"unknown student {config.student!r}; choose one of {', '.join(STUDENT_KINDS)} or "
                          f"{AUTO_STUDENT}", param="student")
    if not config.min_speedup >= 0:
        raise ConfigError(f"min_speedup must be >= 0, got {config.min_speedup}", param="min_speedup")
    if config.student == AUTO_STUDENT:
        if config.gpus > 1:
            raise ConfigError("gpus > 1 trains the transformer student only, not 'auto'", param="gpus")
        return validate_config(replace(config, student=AUTO_STUDENT_KINDS[0], student_options=None))
    if KINDS[config.student].base == "required" and not config.student_base:
        raise ConfigError(f"the {config.student} student needs --student-base DIR (a pretrained sentence encoder)",
                          param="student_base")
    if not isinstance(config.subclasses, int) and config.subclasses not in ("auto", "default"):
        raise ConfigError(f"subclasses must be an integer >= 1 or 'auto', got {config.subclasses!r}",
                          param="subclasses")
    if isinstance(config.subclasses, int) and config.subclasses < 1:
        raise ConfigError("subclasses must be >= 1", param="subclasses")
    if config.alpha != "auto" and (isinstance(config.alpha, bool) or not isinstance(config.alpha, int | float)
                                   or not 0.0 <= config.alpha <= 1.0):
        raise ConfigError(f"alpha must be 'auto' or a number within [0, 1], got {config.alpha!r}", param="alpha")
    for name in ("beta", "tau", "learning_rate"):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}", param=name)
    if config.augment != "auto" and (not isinstance(config.augment, int) or isinstance(config.augment, bool)
                                     or not 0 <= config.augment <= 50):
        raise ConfigError(f"augment must be 'auto' or an integer within [0, 50], got {config.augment!r}",
                          param="augment")
    if isinstance(config.gpus, bool) or not isinstance(config.gpus, int) or not 1 <= config.gpus <= MAX_GPUS:
        raise ConfigError(f"gpus must be an integer within [1, {MAX_GPUS}], got {config.gpus!r}", param="gpus")
    if config.gpus > 1 and config.student not in MULTI_GPU_STUDENTS:
        raise ConfigError(f"gpus > 1 trains the {' or '.join(MULTI_GPU_STUDENTS)} student only, not {config.student!r} "
                          "(the other students are too small to gain from several GPUs)", param="gpus")
    for name in ("epochs", "batch_size", "max_length", "patience"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}", param=name)


def candidates_for(config: DistillConfig) -> list[Candidate]:
    s = DEFAULT_SUBCLASSES if config.subclasses in ("default", "auto") else int(config.subclasses)
    beta = config.beta if config.beta is not None else DEFAULT_BETA
    tau = config.tau if config.tau is not None else STUDENT_DEFAULTS[config.student]["tau"]
    methods = list(AUTO_METHODS) if config.method == "auto" else [parse_method(config.method)]
    out: list[Candidate] = []
    for m in methods:
        if config.subclasses == "auto" and m in SUBCLASS_METHODS:
            out += [Candidate(m.value, g["subclasses"], g["beta"], g["tau"]) for g in AUTO_GRID]
        else:
            out.append(Candidate(m.value, s if m in SUBCLASS_METHODS else 1, beta, tau))
    return out


def budget_epochs(config: DistillConfig, rows: int | None, *, augmented: bool = False) -> int:
    """``--epochs`` when given; else enough epochs for ``min_steps`` updates, within the defaults.

    ``augmented``: the rows hold teacher-scored variants, so one epoch already shows each source row
    1 + K times; a kind whose defaults name ``augmented_epochs`` plans that many at least instead of
    ``epochs`` (cnn: 3 matched 5 on validation in 40% less training, benchmarks/README.md)."""
    defaults = STUDENT_DEFAULTS[config.student]
    if config.epochs:
        return config.epochs
    floor = defaults.get("augmented_epochs", defaults["epochs"]) if augmented else defaults["epochs"]
    if not rows:
        return floor
    steps_per_epoch = math.ceil(rows / (config.batch_size or defaults["batch_size"]))
    return min(defaults["max_epochs"], max(floor, math.ceil(defaults["min_steps"] / steps_per_epoch)))


# alpha="auto" gives the labels their full weight where at least this share of the fit rows (variants aside)
# carry one, and the weight times the share below it. SST-2 7k, 6 seeds, alpha 0.5 against no labels
# (validation / test): every row labelled +1.11 +- 0.28 / +1.01 +- 0.23; 90% labelled -0.13 +- 0.24 /
# +0.80 +- 0.08; 37% labelled -0.04 +- 0.13 / -0.88 +- 0.30 (the hard term is a mean over a batch's
# labelled rows: a few labels weigh as much as many). 37% labelled at 0.5 x 0.37 = 0.185 instead
# (2026-12-08): SST-2 12 seeds +0.72 validation / -0.09 test, AG News 6 seeds (see benchmarks/README.md).
MIN_LABELLED_SHARE = 0.9


def resolve_alpha(config: DistillConfig, labelled_share: float) -> float:
    """``alpha`` as a number: "auto" uses the true labels with the weight the kind's benchmark chose
    (``labelled_alpha``; kinds never screened with labels keep 0: teacher targets only) where (nearly)
    every row has one, and with that weight scaled by the labelled share where fewer do, so that a few
    labels do not weigh as much as many."""
    if config.alpha != "auto":
        return float(config.alpha)
    weight = float(STUDENT_DEFAULTS[config.student].get("labelled_alpha", 0.0))
    if labelled_share < MIN_LABELLED_SHARE:
        return round(weight * max(labelled_share, 0.0), 4)
    return weight


def effective_hyperparameters(config: DistillConfig, cand: Candidate, rows: int | None = None, *,
                              augmented: bool = False, labelled_share: float = 0.0) -> dict:
    defaults = STUDENT_DEFAULTS[config.student]
    patience = config.patience if config.patience is not None else (None if config.epochs else defaults["patience"])
    return {"method": cand.method, "subclasses": cand.subclasses, "beta": cand.beta, "tau": cand.tau,
            "alpha": resolve_alpha(config, labelled_share), "epochs": budget_epochs(config, rows, augmented=augmented),
            "learning_rate": config.learning_rate or defaults["learning_rate"],
            "batch_size": config.batch_size or defaults["batch_size"], "max_length": config.max_length,
            "seed": config.seed, "patience": patience, "augment": config.augment}
