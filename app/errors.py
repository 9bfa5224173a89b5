"""Domain errors of the service.

Services and repositories raise these (never ``HTTPException``); one handler in
``app.main`` turns each into ``{"error": {"code", "message", "param"}}`` with its status.
"""

from __future__ import annotations


class AppError(Exception):
    """A failure the caller can act on; ``code`` is stable, ``message`` is for humans."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(AppError):
    status_code = 422
    code = "invalid_request"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_jobs"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "unavailable"


def not_found(kind: str, resource_id: str, param: str | None = None) -> NotFound:
    """The one message for a missing id; another tenant's id reads exactly the same."""
    return NotFound(f"no {kind} with id {resource_id!r}", param=param, code=f"{kind}_not_found")
