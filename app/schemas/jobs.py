"""Job bodies: what a distillation run asks for and how it is reported."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt, field_validator

from app.schemas.common import PlainStr, ReadModel
from app.vocabulary import (
    DEFAULT_METHOD,
    DEFAULT_STUDENT_KIND,
    DEVICE_CHOICES,
    METHOD_CHOICES,
    STUDENT_CHOICES,
    JobStatus,
)

# The lists come from the library (app.vocabulary): a new method or student kind needs no edit here.
# "auto" trains kd, lelp and random_subclass and keeps the best on a held-out split.
Method = Literal[METHOD_CHOICES]  # type: ignore[valid-type]
StudentKind = Literal[STUDENT_CHOICES]  # type: ignore[valid-type]
Device = Literal[DEVICE_CHOICES]  # type: ignore[valid-type]


class StudentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # "kind": one name for the student kind in the API, the database and the library; "architecture"
    # is the teacher's Hugging Face class. The old spelling is still accepted on input.
    kind: StudentKind = Field(DEFAULT_STUDENT_KIND, validation_alias=AliasChoices("kind", "architecture"))
    base: PlainStr | None = Field(None, max_length=4096,
                             description="transformer/encoder_mlp: a small pretrained model dir to start from; "
                                         "static/cnn: an encoder whose vocabulary the table takes")
    min_speedup: float | None = Field(None, ge=0, le=1e6,
                                      description="kind auto: the least CPU speed-up over the teacher a kept "
                                                  "student must reach (default 100)")


class Hyperparameters(BaseModel):
    """Every field is optional: unset means the library's benchmarked default."""

    model_config = ConfigDict(extra="forbid")

    subclasses: StrictInt | Literal["auto"] | None = Field(None, description="S per class, or \"auto\" to grid-search")
    beta: float | None = Field(None, gt=0, le=100)
    tau: float | None = Field(None, gt=0, le=100)
    alpha: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] | None = Field(
        None, description="weight of the true labels' loss (0-1), or \"auto\" (the default: the student kind's "
                          "benchmarked weight where >= 90% of the training rows have labels, that weight x the "
                          "labelled share below)")
    epochs: int | None = Field(None, ge=1, le=1000)
    learning_rate: float | None = Field(None, gt=0, le=10)
    batch_size: int | None = Field(None, ge=1, le=8192)
    max_length: int | None = Field(None, ge=4, le=4096)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    augment: StrictInt | Literal["auto"] | None = Field(
        None, description="teacher-scored variants per training row (0-50), or \"auto\" (the default: small "
                          "transfer sets only, the count from the data size)")
    patience: int | None = Field(None, ge=1, le=1000, description="epochs without a better validation score")
    gpus: int | None = Field(None, ge=1, le=64, description="GPUs the job trains on with DDP (torchrun); more "
                                                          "than 1 for the transformer student only")

    @field_validator("subclasses")
    @classmethod
    def _subclasses_range(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("subclasses must be between 1 and 64, or \"auto\"")
        return value

    @field_validator("augment")
    @classmethod
    def _augment_range(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 0 <= value <= 50:
            raise ValueError("augment must be between 0 and 50, or \"auto\"")
        return value


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PlainStr | None = Field(None, min_length=1, max_length=200,
                                  description="what you call the job; shown in lists (optional)")
    teacher_id: str = Field(min_length=1, max_length=64)
    train_dataset_id: str = Field(min_length=1, max_length=64)
    eval_dataset_id: str | None = Field(None, min_length=1, max_length=64)
    validation_dataset_id: str | None = Field(
        None, min_length=1, max_length=64,
        description="rows like the traffic the student will serve (same text columns as the train dataset; "
                    "labelled, or scored against the teacher): they pick the best epoch, the temperature and the "
                    "cascade's thresholds instead of 10% of the train rows")
    method: Method = DEFAULT_METHOD
    student: StudentSpec = Field(default_factory=StudentSpec)
    device: Device = "auto"
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    # POSTed the job's final state (job.succeeded|failed|cancelled), signed: a host the operator allowed
    # (LELP_WEBHOOK_ALLOWED_HOSTS), else 422 webhook_not_allowed (docs/API.md, "Webhooks").
    webhook_url: str | None = Field(None, min_length=1, max_length=2000)


class JobProgress(BaseModel):
    stage: str | None = None
    epoch: int | None = None
    step: int | None = None
    total_steps: int | None = None
    fraction: float | None = None
    eta_s: float | None = None
    loss: float | None = None
    message: str | None = None
    # the whole job, across stages and candidates (one bar): 0-1, never going back, and the
    # seconds its pace so far says are left (null until it has made measurable progress)
    overall_fraction: float | None = None
    overall_eta_s: float | None = None
    # the candidate being trained: 1-based index, how many the search trains, its name (kd-t1, ...)
    candidate: int | None = None
    candidates: int | None = None
    candidate_name: str | None = None
    # per epoch so far: [{"candidate", "epoch", "train_loss", "val_score"}] (the live curves; val_score once
    # the epoch was scored on the held-out split)
    history: list[dict[str, Any]] | None = None


class JobError(BaseModel):
    code: str
    message: str


class JobRead(ReadModel):
    id: str
    name: str | None = None
    status: JobStatus
    teacher_id: str | None
    train_dataset_id: str | None
    eval_dataset_id: str | None
    validation_dataset_id: str | None = None
    method: str
    student: dict[str, Any]
    device: str
    hyperparameters: dict[str, Any]
    progress: JobProgress
    metrics: dict[str, Any] | None
    error: JobError | None
    model_id: str | None
    attempts: int
    cancel_requested: bool
    webhook_url: str | None = None
    webhook_state: str | None = None  # pending | delivered | failed (each try is a "webhook" event)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobEventRead(ReadModel):
    id: int
    at: datetime
    type: str
    message: str
    data: dict[str, Any] | None
