"""Judge a job body at submit: everything that would make it fail later is a 4xx now.

Each check names the field at fault in ``param``. The rules mirror what the library and the
worker would refuse: inputs that are not the tenant's, labels the teacher does not know,
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
from app.queue import gpu_worker_alive
from app.schemas.jobs import JobCreate
from app.settings import Settings
from lelp.data.datasets import label_matcher
from lelp.students.registry import KINDS

# Methods that split each class into S sub-classes from the teacher's embedding (lelp.method.targets).
PROJECTED_METHODS = ("lelp", "random_subclass", "kmeans_subclass")
DEFAULT_SUBCLASSES = 2  # lelp.config.DEFAULT_SUBCLASSES
# lelp.data.datasets.split_rows: 10% held out, at least 20 rows on each side.
HOLD_OUT_FRACTION, HOLD_OUT_MINIMUM = 0.1, 20
STUDENTS_WITH_BASE = {kind: info.base for kind, info in KINDS.items()}  # lelp.students.registry (no torch)


@dataclass
class JobInputs:
    teacher: Teacher
    train: Dataset
    eval: Dataset | None


def class_index(label: str, teacher: Teacher) -> int | None:
    """The library's rule (``lelp.data.datasets.label_matcher``, what the worker's ``encode_labels`` applies)."""
    return label_matcher(list(teacher.labels or []))(label)


def held_out(pool: int) -> int:
    return max(int(round(pool * HOLD_OUT_FRACTION)), HOLD_OUT_MINIMUM)


def split_sizes(rows: int, labelled: int) -> tuple[int, int] | None:
    """``lelp.data.datasets.split_rows``'s (kept, held out) for a dataset, None when it would refuse."""
    pool = labelled if labelled >= 2 * HOLD_OUT_MINIMUM + int(round(labelled * HOLD_OUT_FRACTION)) else rows
    k = held_out(pool)
    if pool - k < HOLD_OUT_MINIMUM:
        return None
    return rows - k, k


def _owned_inputs(session: Session, tenant_id: str, body: JobCreate) -> JobInputs:
    teacher = repo.get_owned(session, Teacher, tenant_id, body.teacher_id)
    if teacher is None:
        raise not_found("teacher", body.teacher_id, param="teacher_id")
    found: dict[str, Dataset] = {}
    for param in ("train_dataset_id", "eval_dataset_id"):
        dataset_id = getattr(body, param)
        if dataset_id is None:
            continue
        dataset = repo.get_owned(session, Dataset, tenant_id, dataset_id)
        if dataset is None:
            raise not_found("dataset", dataset_id, param=param)
        found[param] = dataset
    return JobInputs(teacher, found["train_dataset_id"], found.get("eval_dataset_id"))


def _check_labels_and_columns(inputs: JobInputs) -> None:
    teacher = inputs.teacher
    for param, dataset in (("train_dataset_id", inputs.train), ("eval_dataset_id", inputs.eval)):
        if dataset is None:
            continue
        unknown = sorted(label for label in dataset.label_counts if class_index(label, teacher) is None)
        if unknown:
            raise Unprocessable(
                f"dataset {dataset.id} has labels the teacher does not know: {', '.join(unknown[:10])}; "
                f"teacher labels: {', '.join(teacher.labels)}", param=param, code="unknown_label")
        pairs = dataset.text_pair_column is not None
        if pairs != teacher.text_pairs:
            has = f"text pairs (text_pair_column {dataset.text_pair_column!r})" if pairs else "single texts"
            reads = "(text, text_pair) pairs" if teacher.text_pairs else "single texts"
            fix = ("upload the dataset with its text_pair_column" if teacher.text_pairs else
                   "register the teacher with text_pairs=true if it is a pair classifier, or upload the dataset "
                   "without text_pair_column")
            raise Unprocessable(f"dataset {dataset.id} has {has}, but teacher {teacher.id} reads {reads}: {fix}",
                                param=param, code="text_pairs_mismatch")
    if inputs.eval is not None and (inputs.eval.text_column, inputs.eval.text_pair_column) != (
            inputs.train.text_column, inputs.train.text_pair_column):
        raise Unprocessable("the eval dataset must use the same text columns as the train dataset",
                            param="eval_dataset_id", code="column_mismatch")


def _check_method(body: JobCreate, train: Dataset) -> None:
    if body.method == "ce" and train.labelled_rows == 0:
        raise Unprocessable("method 'ce' trains on labels, but the train dataset has no labelled rows",
                            param="method", code="labels_required")
    if body.method == "ce" and len(train.label_counts) < 2:
        raise Unprocessable(f"method 'ce' trains on labels only, but the train dataset has a single class "
                            f"({next(iter(train.label_counts))!r}): nothing to learn; use a distillation method "
                            "(lelp, kd) or add rows of other classes", param="train_dataset_id", code="single_class")


def _check_student(body: JobCreate) -> None:
    kind, base = body.student.kind, body.student.base
    if kind == "auto":  # cnn, static and ngram on the teacher's own vocabulary (lelp.students.registry)
        if base:
            raise Unprocessable("student kind auto searches the students built on the teacher's own vocabulary: "
                                "remove student.base, or name a kind", param="student.base", code="base_not_used")
        return
    if body.student.min_speedup is not None:
        raise Unprocessable("student.min_speedup is the floor of kind auto's search: remove it, or use kind auto",
                            param="student.min_speedup", code="invalid_parameter")
    if STUDENTS_WITH_BASE[kind] == "required" and not base:
        raise Unprocessable(f"the {kind} student is a frozen pretrained encoder + MLP: set student.base to the id "
                            "of one of your base models (POST /v1/base-models) or teachers",
                            param="student.base", code="base_required")
    if STUDENTS_WITH_BASE[kind] == "none" and base:
        raise Unprocessable(f"the {kind} student has no pretrained base (it learns its own hashed n-gram "
                            "embeddings): remove student.base, or use encoder_mlp or transformer",
                            param="student.base", code="base_not_used")


def _check_gpus(body: JobCreate) -> None:
    """``hyperparameters.gpus > 1`` is DDP over several GPUs: the transformer student, on a GPU worker
    (``lelp.config.MULTI_GPU_STUDENTS``)."""
    gpus = body.hyperparameters.gpus
    if gpus is None or gpus == 1:
        return
    if body.student.kind != "transformer":
        raise Unprocessable(f"hyperparameters.gpus > 1 trains the transformer student only (the "
                            f"{body.student.kind} student is too small to gain from several GPUs): "
                            "remove gpus or use student.kind transformer",
                            param="hyperparameters.gpus", code="multi_gpu_unsupported")
    if body.device == "cpu":
        raise Unprocessable("hyperparameters.gpus > 1 asks for GPUs, but device is 'cpu': use device 'gpu' or "
                            "'auto'", param="hyperparameters.gpus", code="multi_gpu_unsupported")


def _check_subclasses(body: JobCreate, inputs: JobInputs) -> None:
    hp = body.hyperparameters
    if hp.subclasses == "auto" or body.method not in PROJECTED_METHODS:
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


def _check_rows(body: JobCreate, train: Dataset) -> None:
    """The held-out splits the library will cut (``lelp.data.datasets.split_rows``) must leave rows to train on."""
    rows = train.rows
    if body.eval_dataset_id is None:
        sizes = split_sizes(rows, train.labelled_rows)
        if sizes is None:
            raise Unprocessable(f"dataset {train.id} has {rows} rows: too few to hold out a test split "
                                f"(10%, at least {HOLD_OUT_MINIMUM} rows each side); add rows or give an "
                                "eval_dataset_id", param="train_dataset_id", code="too_few_rows")
        rows = sizes[0]
    if body.method == "auto" or body.hyperparameters.subclasses == "auto":
        if rows - held_out(rows) < HOLD_OUT_MINIMUM:
            raise Unprocessable(f"{rows} training rows are too few for method or subclasses 'auto', which hold out "
                                f"a validation split (10%, at least {HOLD_OUT_MINIMUM} rows each side): add rows, "
                                "or choose a method and a number of subclasses", param="train_dataset_id",
                                code="too_few_rows")


def check_gpu_worker(session: Session, settings: Settings) -> None:
    """``device: gpu`` needs a live worker that consumes the ``gpu`` queue and sees a CUDA device."""
    if gpu_worker_alive(session, settings):
        return
    raise Unprocessable("device 'gpu' was asked for, but no GPU worker is alive (a worker that consumes the gpu "
                        "queue on a machine with a GPU): ask the operator to start one, or use device 'auto' or 'cpu'",
                        param="device", code="no_gpu_worker")


def check_job(session: Session, settings: Settings, tenant_id: str, body: JobCreate) -> JobInputs:
    """Every check of a job body; returns its inputs (the tenant's rows)."""
    _check_student(body)
    _check_gpus(body)
    inputs = _owned_inputs(session, tenant_id, body)
    _check_labels_and_columns(inputs)
    _check_method(body, inputs.train)
    _check_rows(body, inputs.train)
    _check_subclasses(body, inputs)
    if body.device == "gpu":
        check_gpu_worker(session, settings)
    return inputs
