"""Model bodies and the predict request/response."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

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


class PredictResponse(BaseModel):
    model_id: str
    predictions: list[Prediction]
