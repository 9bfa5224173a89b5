"""Base model bodies (student bases: pretrained encoders)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import PlainStr, ReadModel


class BaseModelFromURI(BaseModel):
    """Register a pretrained model directory that already sits under an allowed root."""

    model_config = ConfigDict(extra="forbid")

    uri: PlainStr = Field(min_length=1, max_length=4096)
    name: PlainStr | None = Field(None, min_length=1, max_length=200)


class BaseModelRead(ReadModel):
    id: str
    name: str
    architecture: str
    model_type: str
    hidden_size: int
    parameters: int | None
    sha256: str
    created_at: datetime
