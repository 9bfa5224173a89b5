"""Teacher bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import PlainStr, ReadModel


class TeacherFromURI(BaseModel):
    """Register a model directory that already sits under an allowed root."""

    model_config = ConfigDict(extra="forbid")

    uri: PlainStr = Field(min_length=1, max_length=4096)
    name: PlainStr | None = Field(None, min_length=1, max_length=200)
    text_pairs: bool = Field(False, description="the classifier reads (text, text_pair) inputs, e.g. NLI")


class TeacherRead(ReadModel):
    id: str
    name: str
    architecture: str
    model_type: str
    num_labels: int
    labels: list[str]
    hidden_size: int
    parameters: int | None
    sha256: str
    text_pairs: bool
    created_at: datetime
