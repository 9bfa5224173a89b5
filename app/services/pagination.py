"""Opaque keyset cursors: base64 of ``created_at|id`` of the last row of a page."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from app.db import repositories as repo
from app.db.repositories import is_valid_id
from app.errors import Unprocessable


class _Row(Protocol):
    id: str
    created_at: datetime


R = TypeVar("R", bound=_Row)


def encode_cursor(row: _Row) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|", 1)
        if not is_valid_id(row_id):
            raise ValueError(row_id)
        return datetime.fromisoformat(created), row_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unprocessable("invalid cursor: pass the next_cursor of a previous page", param="after",
                            code="invalid_cursor") from None


def page(rows: Sequence[R], limit: int) -> tuple[list[R], bool, str | None]:
    """Split the ``limit + 1`` rows of a query into (page, has_more, next_cursor)."""
    has_more = len(rows) > limit
    data = list(rows[:limit])
    return data, has_more, (encode_cursor(data[-1]) if has_more and data else None)


def list_page(session, table: type, tenant_id: str, limit: int, after: str | None, **filters) -> dict:
    """One page of a tenant's rows, newest first, as the ``Page`` body of every list endpoint."""
    rows = repo.list_owned(session, table, tenant_id, limit=limit, after=decode_cursor(after) if after else None,
                           **filters)
    session.commit()  # end the read: the connection goes back before the response waits for a thread
    data, has_more, cursor = page(rows, limit)
    return {"data": data, "has_more": has_more, "next_cursor": cursor}
