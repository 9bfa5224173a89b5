"""Operations endpoints: liveness, readiness, Prometheus metrics (no API key; job counts need the metrics token)."""

from __future__ import annotations

import asyncio
import hmac
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.errors import Unauthorized
from app.queue import make_celery
from app.services import ops
from app.settings import Settings

router = APIRouter(tags=["ops"])
log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 5.0


def _check_database(request: Request) -> None:
    ops.check_database(request.app.state.sessionmaker)


def _check_broker(settings: Settings) -> None:
    """Open (and close) one broker connection, with the transport options jobs are sent with."""
    connection = make_celery(settings, set_as_current=False).connection_for_write()
    with connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


async def _run_check(fn, *args) -> str:  # noqa: ANN001
    try:
        await asyncio.wait_for(run_in_threadpool(fn, *args), CHECK_TIMEOUT_S)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness check %s failed: %s", fn.__name__, exc)
        return f"unavailable: {type(exc).__name__}"


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database or the broker is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """The database and the broker answer."""
    checks = {
        "database": await _run_check(_check_database, request),
        "broker": await _run_check(_check_broker, request.app.state.settings),
    }
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={401: {"description": "A metrics token is set and "
                                                                                   "was not sent"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, predict batching; jobs by status with the metrics token.

    Job counts cover every tenant, so they are shown only to a caller that sends
    ``LELP_METRICS_TOKEN`` as a Bearer token; without a configured token nobody sees them.
    """
    settings: Settings = request.app.state.settings
    counts: dict[str, int] | None = None
    if settings.metrics_token:
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {settings.metrics_token}".encode()):
            raise Unauthorized("send the metrics token as 'Authorization: Bearer <token>'", code="unauthorized")
        counts = ops.job_counts(request.app.state.sessionmaker)
    body = request.app.state.metrics.render(counts)
    return Response(body, media_type=request.app.state.metrics.content_type)
