"""Shapes shared by every resource: the error envelope and paginated lists."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

T = TypeVar("T")


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("control characters are not allowed")
    return value


PlainStr = Annotated[str, AfterValidator(_printable)]
"""A name, column or URI: no NUL or other control characters (they could never be valid)."""


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    """A page of a list, newest first; pass ``next_cursor`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    next_cursor: str | None = None


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "Malformed request"),
        (401, "Missing or invalid API key"),
        (404, "No such resource for this tenant"),
        (422, "Invalid input"),
    ]
}
