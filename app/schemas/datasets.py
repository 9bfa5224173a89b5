"""Dataset bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import PlainStr, ReadModel


class DatasetFromURI(BaseModel):
    """Register a data file that already sits under an allowed root."""

    model_config = ConfigDict(extra="forbid")

    uri: PlainStr = Field(min_length=1, max_length=4096)
    name: PlainStr | None = Field(None, min_length=1, max_length=200)
    text_column: PlainStr = Field("text", min_length=1, max_length=200)
    text_pair_column: PlainStr | None = Field(None, max_length=200)
    label_column: PlainStr | None = Field("label", max_length=200,
                                     description="null or \"\" for an unlabelled (transfer) dataset")
    format: PlainStr | None = Field(None, description="csv, tsv, jsonl or parquet; default: from the extension")


class DatasetRead(ReadModel):
    id: str
    name: str
    format: str
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    rows: int
    labelled_rows: int
    label_counts: dict[str, int]
    columns: list[str]
    sha256: str
    size_bytes: int
    created_at: datetime
