"""Authorise, then bound, every request body before anything reads it (pure ASGI middleware).

FastAPI reads and parses a JSON body before it runs any dependency, the API key check
included: a 100 MiB body sent *without a key* was buffered and parsed, then answered 401
(+299 MB RSS). This middleware runs before the app, so for a request that carries a body
(``Content-Length`` > 0 or chunked) to ``/v1/...``:

1. the key is checked first (401, and the connection closed, before one body byte is read);
   the tenant found is left in ``scope["state"]`` so ``app.deps.get_tenant`` does not ask again;
2. the route's cap (``body_cap``) is compared with ``Content-Length`` (413 at once) and then
   with the bytes actually received (413 as soon as they pass it: chunked or lying clients);
3. the body must arrive within ``body_timeout_s`` plus one second per ``body_min_rate`` bytes
   received so far (408): uvicorn's header timeout (``app.http_server``) ends when the headers
   are complete, and a body sent one byte every 2 s held its connection past 35 s.

The errors are ``HTTPException`` subclasses so that FastAPI's own body reader re-raises them
unchanged (it turns any other exception into a 400).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AppError

#: POST routes whose body is a file upload (multipart): their own cap, ``max_upload_bytes``
UPLOAD_ROUTES = frozenset({"/v1/datasets", "/v1/teachers", "/v1/base-models"})
PREDICT_SUFFIX = "/predict"
TENANT_STATE = "lelp_tenant"


class BodyTooLarge(HTTPException):
    """The declared or received body passed the route's cap (``upload_too_large`` on upload routes)."""

    def __init__(self, cap: int, upload: bool = False) -> None:
        what = "upload" if upload else "request body"
        super().__init__(413, f"the {what} is larger than this endpoint's limit of {cap:,} bytes",
                         headers={"Connection": "close"})
        self.error_code = "upload_too_large" if upload else "body_too_large"


class BodyTimeout(HTTPException):
    """The body did not arrive in time."""

    error_code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:.0f} s",
                         headers={"Connection": "close"})


def body_cap(settings: Any, method: str, path: str) -> int:
    """The most body bytes ``method path`` may send: uploads, predict batches, or a small JSON body."""
    path = path.rstrip("/") or "/"
    if method == "POST" and path in UPLOAD_ROUTES:
        return settings.max_upload_bytes
    if method == "POST" and path.startswith("/v1/models/") and path.endswith(PREDICT_SUFFIX):
        return settings.max_predict_body_bytes
    return settings.max_json_bytes


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "param": None}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """See the module docstring. ``authenticate(scope)`` returns the tenant or raises ``Unauthorized``."""

    def __init__(self, app: ASGIApp, settings: Any, authenticate: Callable[[Scope], Awaitable[Any]]) -> None:
        self.app, self.settings, self.authenticate = app, settings, authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if not chunked and not declared:  # no body: nothing to guard
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/v1/"):
            try:
                tenant = await self.authenticate(scope)
            except AppError as exc:
                await _refuse(send, exc.status_code, exc.code, exc.message)
                return
            scope.setdefault("state", {})[TENANT_STATE] = tenant
        cap = body_cap(self.settings, scope["method"], scope["path"])
        upload = scope["method"] == "POST" and (scope["path"].rstrip("/") in UPLOAD_ROUTES)
        if declared is not None and declared > cap:
            too_large = BodyTooLarge(cap, upload)
            await _refuse(send, 413, too_large.error_code, too_large.detail)
            return
        await self._guarded(scope, receive, send, cap, upload)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, cap: int, upload: bool) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        base_s, rate = self.settings.body_timeout_s, self.settings.body_min_rate
        received = 0
        complete = False
        started = False

        async def guarded_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: later receives wait for a disconnect, which may take long
                return await receive()
            remaining = start + base_s + received / rate - loop.time()
            if remaining <= 0:
                raise BodyTimeout(loop.time() - start)
            try:  # asyncio.timeout, not wait_for: no task per read on predict's hot path
                async with asyncio.timeout(remaining):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(loop.time() - start) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap, upload)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:  # raised where no handler turned it into a response
            if started:
                raise
            await _refuse(send, exc.status_code, exc.error_code, exc.detail)
