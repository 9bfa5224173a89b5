"""Judge a job body at submit: everything that would make it fail later is a 4xx now.

Each check names the field at fault in ``param``. The rules mirror what the library and the
worker would refuse: inputs that are not the tenant's, labels the teacher does not know, an eval
set without labels, labelled rows of a single class (``lelp.data.label_checks``),
text pairs on a single-text teacher (or single texts on a pair teacher), a student that
needs a base and has none (or has one it cannot use), a number of sub-classes the teacher's
embedding or the data cannot hold, too few rows for the held-out splits, and a GPU job when
no GPU worker is alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.models import Dataset, Teacher
from app.errors import Unprocessable, not_found
from app.queue import gpu_worker_alive, most_gpus_on_a_worker
from app.schemas.jobs import JobCreate
from app.settings import Settings
from lelp.data.datasets import label_matcher
from lelp.data.label_checks import label_problem
from lelp.data.splits import HOLD_OUT_FRACTION, HOLD_OUT_MINIMUM, split_sizes
from lelp.method.registry import AUTO, DEFAULT_SUBCLASSES, PROJECTED_METHODS, Method
from lelp.students.registry import AUTO_STUDENT, KINDS, kinds_where

HOLD_OUT = f"{HOLD_OUT_FRACTION:.0%}, at least {HOLD_OUT_MINIMUM} rows each side"


@dataclass
class SubmitInputs:
    """The tenant's rows a job body names, read once for the checks (the worker's own read is
    ``worker.job_inputs.JobInputs``)."""

    teacher: Teacher
    train: Dataset
    eval: Dataset | None
    validation: Dataset | None = None


def class_index(label: str, teacher: Teacher) -> int | None:
    """The library's rule (``lelp.data.datasets.label_matcher``, what the worker's ``encode_labels`` applies)."""
    return label_matcher(list(teacher.labels or []))(label)


def _owned_inputs(session: Session, tenant_id: str, body: JobCreate) -> SubmitInputs:
    teacher = repo.get_owned(session, Teacher, tenant_id, body.teacher_id)
    if teacher is None:
        raise not_found("teacher", body.teacher_id, param="teacher_id")
    found: dict[str, Dataset] = {}
    for param in ("train_dataset_id", "eval_dataset_id", "validation_dataset_id"):
        dataset_id = getattr(body, param)
        if dataset_id is None:
            continue
        dataset = repo.get_owned(session, Dataset, tenant_id, dataset_id)
        if dataset is None:
            raise not_found("dataset", dataset_id, param=param)
        found[param] = dataset
    return SubmitInputs(teacher, found["train_dataset_id"], found.get("eval_dataset_id"),
                        found.get("validation_dataset_id"))


def _check_labels_and_columns(inputs: SubmitInputs) -> None:
    teacher = inputs.teacher
    _check_labels(inputs)
    for param, dataset in (("train_dataset_id", inputs.train), ("eval_dataset_id", inputs.eval),
                           ("validation_dataset_id", inputs.validation)):
        if dataset is None:
            continue
        pairs = dataset.text_pair_column is not None
        if pairs != teacher.text_pairs:
            has = f"text pairs (text_pair_column {dataset.text_pair_column!r})" if pairs else "single texts"
            reads = "(text, text_pair) pairs" if teacher.text_pairs else "single texts"
            fix = ("upload the dataset with its text_pair_column" if teacher.text_pairs else
                   "register the teacher with text_pairs=true if it is a pair classifier, or upload the dataset "
                   "without text_pair_column")
            raise Unprocessable(f"dataset {dataset.id} has {has}, but teacher {teacher.id} reads {reads}: {fix}",
                                param=param, code="text_pairs_mismatch")
    for role, dataset in (("eval", inputs.eval), ("validation", inputs.validation)):
        if dataset is not None and (dataset.text_column, dataset.text_pair_column) != (
                inputs.train.text_column, inputs.train.text_pair_column):
            raise Unprocessable(f"the {role} dataset must use the same text columns as the train dataset",
                                param=f"{role}_dataset_id", code="column_mismatch")


def _check_labels(inputs: SubmitInputs) -> None:
    """The library's rule (``lelp.data.label_checks``) on the stored label counts: unknown labels, an eval
    set without labels, labelled rows of a single class are a 422 here, not a job that fails or "succeeds"
    with a meaningless score later."""
    train, evaluation, validation = inputs.train, inputs.eval, inputs.validation
    names = {"train": f"train dataset {train.id}", "eval": f"eval dataset {evaluation.id}" if evaluation else "",
             "validation": f"validation dataset {validation.id}" if validation else ""}
    problem = label_problem(list(inputs.teacher.labels or []), dict(train.label_counts or {}),
                            dict(evaluation.label_counts or {}) if evaluation is not None else None, names=names,
                            validation_counts=dict(validation.label_counts or {}) if validation is not None else None)
    if problem is not None:
        raise Unprocessable(problem.message, param=f"{problem.role}_dataset_id", code=problem.code)


def _check_method(body: JobCreate, train: Dataset) -> None:
    if body.method == Method.CE and train.labelled_rows == 0:
        raise Unprocessable("method 'ce' trains on labels, but the train dataset has no labelled rows",
                            param="method", code="labels_required")


def _check_student(body: JobCreate) -> None:
    kind, base = body.student.kind, body.student.base
    if kind == AUTO_STUDENT:  # cnn, static and ngram on the teacher's own vocabulary (lelp.students.registry)
        if base:
            raise Unprocessable("student kind auto searches the students built on the teacher's own vocabulary: "
                                "remove student.base, or name a kind", param="student.base", code="base_not_used")
        return
    if body.student.min_speedup is not None:
        raise Unprocessable("student.min_speedup is the floor of kind auto's search: remove it, or use kind auto",
                            param="student.min_speedup", code="invalid_parameter")
    if KINDS[kind].base == "required" and not base:
        raise Unprocessable(f"the {kind} student starts from a pretrained encoder: set student.base to the id "
                            "of one of your base models (POST /v1/base-models) or teachers",
                            param="student.base", code="base_required")
    if KINDS[kind].base == "none" and base:
        with_base = " or ".join(k for k, info in KINDS.items() if info.base != "none")
        raise Unprocessable(f"the {kind} student has no pretrained base (it learns its own embeddings): remove "
                            f"student.base, or use a student that starts from one ({with_base})",
                            param="student.base", code="base_not_used")


def _check_gpus(session: Session, settings: Settings, body: JobCreate) -> None:
    """``hyperparameters.gpus > 1`` is DDP over several GPUs: the kinds marked ``multi_gpu`` in the kind
    table, on a GPU worker that sees at least that many devices (its heartbeat says how many):
    ``gpus: 64`` with no GPU worker used to be queued on the CPU and run as CPU ranks."""
    gpus = body.hyperparameters.gpus
    if gpus is None or gpus == 1:
        return
    if not KINDS[body.student.kind].multi_gpu:
        multi = " or ".join(kinds_where(multi_gpu=True))
        raise Unprocessable(f"hyperparameters.gpus > 1 trains the {multi} student only (the "
                            f"{body.student.kind} student is too small to gain from several GPUs): "
                            f"remove gpus or use student.kind {multi}",
                            param="hyperparameters.gpus", code="multi_gpu_unsupported")
    if body.device == "cpu":
        raise Unprocessable("hyperparameters.gpus > 1 asks for GPUs, but device is 'cpu': use device 'gpu' or "
                            "'auto'", param="hyperparameters.gpus", code="multi_gpu_unsupported")
    most = most_gpus_on_a_worker(session, settings)
    if gpus > most:
        seen = f"the live GPU worker with the most devices sees {most}" if most else "no GPU worker is alive"
        raise Unprocessable(f"hyperparameters.gpus is {gpus}, but {seen}: a job's processes all run on one "
                            "worker (start one with `lelp worker --gpus 0,1 --gpus-per-worker 2`), or lower gpus",
                            param="hyperparameters.gpus", code="not_enough_gpus")


def _check_subclasses(body: JobCreate, inputs: SubmitInputs) -> None:
    hp = body.hyperparameters
    if hp.subclasses == AUTO or body.method not in PROJECTED_METHODS:
        return  # "auto" searches skip (and report) a candidate the data cannot support
    s = hp.subclasses or DEFAULT_SUBCLASSES
    teacher = inputs.teacher
    c = teacher.num_labels
    if teacher.hidden_size < s + c:
        raise Unprocessable(
            f"subclasses={s} with {c} classes needs a teacher embedding of at least {s + c} dimensions; "
            f"teacher {teacher.id} has {teacher.hidden_size}: choose subclasses <= {teacher.hidden_size - c}",
            param="hyperparameters.subclasses", code="too_many_subclasses")
    train = inputs.train
    exact = inputs.eval is not None and train.labelled_rows == train.rows
    need = max(s + 1, 2)
    if exact:  # every training row is labelled and none is held out: the class counts are final
        counts = [0] * c
        for label, n in train.label_counts.items():
            index = class_index(label, teacher)
            if index is not None:
                counts[index] += n
        for index, n in enumerate(counts):
            if n < need:
                raise Unprocessable(
                    f"class {teacher.labels[index]!r} has {n} rows in dataset {train.id}; subclasses={s} needs at "
                    f"least {need} rows per class: add rows of that class or choose a smaller subclasses",
                    param="hyperparameters.subclasses", code="too_many_subclasses")
    elif train.rows < need * c:
        raise Unprocessable(f"dataset {train.id} has {train.rows} rows; subclasses={s} with {c} classes needs at "
                            f"least {need * c}", param="hyperparameters.subclasses", code="too_many_subclasses")


def _check_rows(body: JobCreate, train: Dataset, validation: Dataset | None = None) -> None:
    """The held-out splits the library will cut (``lelp.data.splits.split_sizes``) must leave rows to train on:
    a test split when there is no eval dataset, and a validation split (it picks the best epoch, and the best
    candidate of ``auto``) when there is no validation dataset, which then needs as many rows as a split."""
    if validation is not None and validation.rows < HOLD_OUT_MINIMUM:
        raise Unprocessable(f"validation dataset {validation.id} has {validation.rows} rows; a validation set needs "
                            f"at least {HOLD_OUT_MINIMUM}", param="validation_dataset_id", code="too_few_rows")
    rows = train.rows
    if body.eval_dataset_id is None:
        sizes = split_sizes(rows, train.labelled_rows)
        if sizes is None:
            raise Unprocessable(f"dataset {train.id} has {rows} rows: too few to hold out a test split "
                                f"({HOLD_OUT}); add rows or give an eval_dataset_id", param="train_dataset_id",
                                code="too_few_rows")
        rows = sizes.kept
    if validation is not None:
        return
    # the validation split's refusal depends on the row count only (the labelled pool falls back to all rows)
    if split_sizes(rows, 0) is None:
        raise Unprocessable(f"{rows} training rows are too few to hold out a validation split ({HOLD_OUT}), "
                            "which every job scores its epochs on: add rows", param="train_dataset_id",
                            code="too_few_rows")


def check_gpu_worker(session: Session, settings: Settings) -> None:
    """``device: gpu`` needs a live worker that consumes the ``gpu`` queue and sees a CUDA device."""
    if gpu_worker_alive(session, settings):
        return
    raise Unprocessable("device 'gpu' was asked for, but no GPU worker is alive (a worker that consumes the gpu "
                        "queue on a machine with a GPU): ask the operator to start one, or use device 'auto' or 'cpu'",
                        param="device", code="no_gpu_worker")


#: models whose position ids start after the padding index (``max_position_embeddings`` - 2 usable)
OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "bart": 0}


def teacher_positions(settings: Settings, teacher: Teacher) -> int | None:
    """The longest input the teacher's position embeddings take, from its stored ``config.json``
    (None when the config names none: relative positions, or a config we cannot read)."""
    import json

    from app.storage import ArtifactStore

    try:
        with ArtifactStore(settings.artifact_url).open(f"{teacher.uri}/config.json") as fh:
            config = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    return positions - OFFSET_POSITIONS.get(str(config.get("model_type")), 0)


def _check_max_length(settings: Settings, body: JobCreate, teacher: Teacher) -> None:
    """``max_length`` 4096 on a teacher with 128 positions failed the job with internal_error."""
    max_length = body.hyperparameters.max_length
    if max_length is None:
        return
    positions = teacher_positions(settings, teacher)
    if positions is not None and max_length > positions:
        raise Unprocessable(f"hyperparameters.max_length is {max_length}, but the teacher reads at most {positions} "
                            "tokens (its max_position_embeddings): lower max_length",
                            param="hyperparameters.max_length", code="max_length_too_long")


def check_job(session: Session, settings: Settings, tenant_id: str, body: JobCreate) -> SubmitInputs:
    """Every check of a job body; returns its inputs (the tenant's rows)."""
    _check_student(body)
    _check_gpus(session, settings, body)
    inputs = _owned_inputs(session, tenant_id, body)
    _check_labels_and_columns(inputs)
    _check_max_length(settings, body, inputs.teacher)
    _check_method(body, inputs.train)
    _check_rows(body, inputs.train, inputs.validation)
    _check_subclasses(body, inputs)
    if body.device == "gpu":
        check_gpu_worker(session, settings)
    return inputs
