"""Model bodies and the predict request/response."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from app.schemas.common import ReadModel


class ModelRead(ReadModel):
    id: str
    job_id: str
    teacher_id: str | None
    method: str
    kind: str  # the student kind (ngram, static, cnn, encoder_mlp, transformer)
    labels: list[str]
    parameters: int | None
    size_bytes: int | None
    metrics: dict[str, Any]
    text_pairs: bool | None = Field(None, description="trained on (text, text_pair) inputs; predict takes the same")
    created_at: datetime
    #: what a predict is served on: "onnxruntime" or "torch" (the loaded copy's, else the planned one)
    runtime: str | None = None
    cascade: dict[str, Any] | None = Field(None, description="served as a cascade: threshold, target, "
                                           "validation figures, keep_traffic (POST /v1/models/{id}/cascade)")


class CascadeRequest(BaseModel):
    """Serve a model as a cascade: one target, the threshold is chosen on the job's validation rows."""

    model_config = ConfigDict(extra="forbid")

    target_accuracy: float | None = Field(None, gt=0, le=1, description="fraction of the teacher's accuracy to "
                                          "reach, e.g. 0.99 (the fewest rows deferred that reach it on validation)")
    max_deferred_fraction: float | None = Field(None, ge=0, le=1, description="deferral budget: at most this "
                                                "share of rows to the teacher (the most accurate threshold within it)")
    keep_traffic: bool = Field(False, description="keep deferred inputs with the teacher's answers for redistil")
    max_kept_rows: int | None = Field(None, ge=1, description="bound on kept rows (default: the server's)")

    @model_validator(mode="after")
    def _one_target(self) -> CascadeRequest:
        if (self.target_accuracy is None) == (self.max_deferred_fraction is None):
            raise ValueError("give exactly one of target_accuracy and max_deferred_fraction")
        return self


class TextPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    text_pair: StrictStr


class PredictRequest(BaseModel):
    """Texts, or text pairs for a pair classifier; limits come from the settings."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[StrictStr] | list[TextPair] = Field(min_length=1)
    #: "int8": serve this request on the model's int8 onnxruntime export (only when asked for)
    quantize: Literal["int8"] | None = None


class Prediction(BaseModel):
    label: str
    score: float
    probabilities: dict[str, float]
    served_by: Literal["student", "teacher"] | None = Field(None, description="a cascade model only: which "
                                                            "model gave this answer")


class PredictResponse(BaseModel):
    model_id: str
    predictions: list[Prediction]
