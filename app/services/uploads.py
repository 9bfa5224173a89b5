"""Request bodies of the upload endpoints: multipart streamed to disk, or a small JSON body.

The upload endpoints accept either ``multipart/form-data`` (a file) or
``application/json`` (a URI), so they read the request themselves instead of letting
FastAPI pick one body type. The byte limit is enforced while the body streams in: an
oversized upload is refused as soon as it crosses the limit, not after it was stored.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from app.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from lelp.uploads import jsonsafe

CHUNK = 1 << 20
M = TypeVar("M", bound=BaseModel)


@dataclass
class Upload:
    """One uploaded file, now on local disk, plus the form's text fields."""

    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def body_kind(request: Request) -> str:
    """``json`` or ``multipart``; anything else is a 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return "json"
    if content_type == "multipart/form-data":
        return "multipart"
    raise UnsupportedMediaType(
        f"send multipart/form-data with a file, or application/json with a uri (got {content_type or 'nothing'!r})",
        code="unsupported_media_type")


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the upload is larger than the limit of {max_bytes:,} bytes", param="file",
                           code="upload_too_large")


async def _limited(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > max_bytes:
            raise _too_large(max_bytes)
        yield chunk


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def read_json(request: Request, model: type[M]) -> M:
    """Parse a small JSON body into ``model``: 400 when it is not JSON, 422 when it does not fit."""
    max_bytes = request.app.state.settings.max_json_bytes
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    raw = b"".join([chunk async for chunk in _limited(request.stream(), max_bytes)])
    try:
        data = jsonsafe.loads(raw)  # bounded depth: a 100k-deep body was a RecursionError, a 500
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _save(upload: UploadFile, tmp_dir: Path) -> tuple[Path, int, str]:
    suffix = "".join(Path(upload.filename or "").suffixes[-2:])[:20]
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=tmp_dir)
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
        upload.file.seek(0)
        while chunk := upload.file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return Path(name), size, digest.hexdigest()


async def read_multipart(request: Request, *, max_bytes: int, tmp_dir: Path, allowed_fields: set[str],
                         file_field: str = "file") -> Upload:
    """Stream a multipart body to a temp file under ``tmp_dir``; the caller discards it when done."""
    declared = _declared_length(request)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    parser = MultiPartParser(request.headers, _limited(request.stream(), max_bytes), max_files=1,
                             max_fields=len(allowed_fields) + 1, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}", code="invalid_multipart") from None
    try:
        fields: dict[str, str] = {}
        upload: UploadFile | None = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != file_field:
                    raise Unprocessable(f"unexpected file field {key!r}; send the file as {file_field!r}",
                                        param=key, code="unknown_field")
                upload = value
            elif key not in allowed_fields:
                raise Unprocessable(f"unknown form field {key!r}; allowed: {', '.join(sorted(allowed_fields))}",
                                    param=key, code="unknown_field")
            elif not value.isprintable():
                raise Unprocessable(f"form field {key!r} has control characters", param=key, code="invalid_request")
            else:
                fields[key] = value
        if upload is None:
            raise Unprocessable(f"no file: send it in the form field {file_field!r}", param=file_field,
                                code="missing_file")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        path, size, sha = await run_in_threadpool(_save, upload, tmp_dir)
        filename = "".join(ch for ch in (upload.filename or "") if ch.isprintable())[:255]
        return Upload(path=path, filename=filename, size=size, sha256=sha, fields=fields)
    finally:
        await form.close()


def form_bool(fields: dict[str, str], name: str, default: bool = False) -> bool:
    """A boolean form field: true/false, 1/0, yes/no (any case); absent or empty means ``default``."""
    value = fields.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise Unprocessable(f"form field {name!r} must be true or false, got {fields[name]!r}", param=name,
                        code="invalid_request")


def multipart_openapi(fields: dict[str, dict], json_schema_ref: str, description: str) -> dict:
    """``openapi_extra`` that documents both body types of an upload endpoint."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}, **fields},
                    }
                },
                "application/json": {"schema": {"$ref": f"#/components/schemas/{json_schema_ref}"}},
            },
        }
    }
