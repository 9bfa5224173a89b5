"""The FastAPI application: ``create_app(settings)``; ``app.main:app`` for uvicorn.

Importing this module builds nothing and connects to nothing: ``app`` is created on
first access (module ``__getattr__``), and torch is only imported when a prediction
loads a model.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__, ui
from app.api import base_models, datasets, jobs, models, ops, reports, teachers
from app.db.session import make_engine, make_sessionmaker
from app.errors import AppError
from app.metrics import Metrics, MetricsMiddleware
from app.request_guard import RequestGuard
from app.services.exports import OnnxExports
from app.services.inference import InferenceService
from app.services.library_errors import api_error
from app.settings import Settings, get_settings
from app.storage import ArtifactStore
from lelp.errors import bounded_traceback

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 408: "request_timeout", 413: "payload_too_large",
              415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests"}


def error_response(status: int, code: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "param": param}}, status_code=status,
                        headers=headers)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", f"the body is not valid JSON: {first.get('msg', '')}")
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        message = f"unknown field {param!r}"
    elif param:
        message = f"{param}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return error_response(422, "invalid_request", message, param)


def install_error_handlers(app: FastAPI) -> None:
    """One place that turns every failure into ``{"error": {"code", "message", "param"}}``."""
    from lelp.errors import LELPError  # light module: no torch

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        # After a 413 the rest of the body is unread: closing the connection stops the client
        # sending it (otherwise the server drains the whole oversized upload to keep the connection).
        headers = {"Connection": "close"} if exc.status_code == 413 else None
        if getattr(exc, "retry_after_s", None):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(exc.status_code, exc.code, exc.message, exc.param, headers=headers)

    @app.exception_handler(LELPError)
    async def _lelp_error(_request: Request, exc: LELPError) -> JSONResponse:
        # A library error no service translated with its context: still no temp path, no CLI flag.
        error = api_error(exc)
        return error_response(error.status_code, error.code, error.message, error.param)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A JSON endpoint sent another media type: FastAPI does not parse it and reports the
        # body as missing or of the wrong type; the caller's mistake is the content type.
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type != "application/json" and not content_type.endswith("+json") and any(
                (error.get("loc") or ("",))[0] == "body" for error in exc.errors()):
            return error_response(415, "unsupported_media_type",
                                  f"send the body as application/json (got {content_type!r})")
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "error_code", None) or HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # Postgres restarting or unreachable: the client may retry; nothing of the request was kept.
        log.warning("database unavailable: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return error_response(503, "database_unavailable", "the database is not answering; try again shortly",
                              headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # the traceback as text, each line and the whole bounded: an exception's message may
        # carry user bytes (a 50 MiB archive member name was a 52 MB log record)
        log.error("unhandled error\n%s", bounded_traceback(exc))
        return error_response(500, "internal_error", "an internal error occurred; it has been logged")


def _route_template(scope: dict) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _authenticator(app: FastAPI):  # noqa: ANN202
    """``RequestGuard``'s key check: the same cache and words as ``app.deps.get_tenant``."""
    from app.deps import bearer_key, tenant_for_key

    async def authenticate(scope: dict):  # noqa: ANN202
        header = next((value for key, value in scope["headers"] if key == b"authorization"), b"")
        return await tenant_for_key(app.state, bearer_key(header.decode("latin-1")))

    return authenticate


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    (settings.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    store = ArtifactStore(settings.artifact_url)
    metrics = Metrics()
    sessionmaker = make_sessionmaker(engine)
    exports = OnnxExports(store, sessionmaker, settings.data_dir / "tmp")
    inference = InferenceService(store, cache_dir=settings.data_dir / "cache" / "models",
                                 cache_size=settings.model_cache_size, max_batch=settings.predict_max_batch,
                                 metrics=metrics,
                                 runtime=settings.predict_runtime, exports=exports,
                                 teacher_threads=settings.cascade_teacher_threads)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from app.http_server import install_log_redaction
        from app.services.sweeper import SweeperThread

        install_log_redaction()  # here: uvicorn has configured its loggers by now

        sweeper = SweeperThread(settings).start() if settings.sweep_in_api else None
        inference.warm_up()
        yield
        if sweeper is not None:
            sweeper.stop()
        inference.close()
        engine.dispose()

    # docs_url=None: app.ui serves /docs from a packaged Swagger UI (FastAPI's default page needs a CDN).
    otel = settings.opentelemetry
    app = FastAPI(title="LELP Distill", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel},
                  description="Distil few-class text classifiers with LELP. Authenticate with "
                              "`Authorization: Bearer <api key>`.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.exports = exports
    app.state.store = store
    app.state.metrics = metrics
    app.state.inference = inference
    install_error_handlers(app)
    models.add_predict_route(app)  # the hot path: first, on the app's own router
    for module in (models, jobs, teachers, base_models, datasets, ops, reports):
        app.include_router(module.router)
    ui.install(app)
    app.add_middleware(RequestGuard, settings=settings, authenticate=_authenticator(app))
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_of=_route_template)
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``app.main:app`` is built on first access, so importing the module has no side effects."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module 'app.main' has no attribute {name!r}")
