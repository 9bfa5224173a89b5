"""uvicorn options shared by ``lelp serve`` and ``lelp api``: timeouts for slow clients and shutdown.

uvicorn has a keep-alive timeout between requests but none while a request's headers
arrive: a client that opens a connection and sends one header byte every few seconds
holds it (and its memory) for ever, and a few thousand such clients exhaust the server.
``HeaderTimeoutProtocol`` closes a connection whose request line and headers are not
complete ``header_timeout_s`` after the connection (or the next keep-alive request) began.
``timeout_graceful_shutdown`` bounds the wait for requests in flight at shutdown (a predict
stuck in a model used to keep "Waiting for background tasks" for ever).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline for each request's headers."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._start_header_timer()

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_header_timer", None) is None:
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def protocol_with_header_timeout(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """A protocol class with its own deadline (uvicorn builds one instance per connection)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` from the settings."""
    return {"http": protocol_with_header_timeout(settings.header_timeout_s),
            "timeout_graceful_shutdown": max(1, round(settings.shutdown_timeout_s))}


#: query parameters whose values never reach a log line (a key sent as ``?api_key=`` is refused,
#: but uvicorn's access log wrote it down)
SECRET_PARAMS = re.compile(r"(?i)([?&](?:api_key|apikey|key|token|access_token|auth|authorization|password)=)[^&#\s]*")


def redact(text: str) -> str:
    """``text`` with the values of ``SECRET_PARAMS`` replaced by ``REDACTED``."""
    return SECRET_PARAMS.sub(r"\1REDACTED", text)


class RedactSecrets(logging.Filter):
    """Redacts secret query values in uvicorn's access-log records (``args``: client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], redact(record.args[2]), *record.args[3:])
        elif isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    """Put ``RedactSecrets`` on uvicorn's access logger once (after uvicorn configured logging)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())
