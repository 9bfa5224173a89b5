"""Predict's request handling without FastAPI's generic machinery, with the same answers.

FastAPI decodes a JSON body into Python objects, then validates them against ``PredictRequest``,
then solves the route's dependencies: on the n-gram student at 32 clients that per-request work
was most of the event loop's time (profile in benchmarks/README.md, "Serving"). ``PredictRoute``
keeps everything FastAPI derives from the route's signature (OpenAPI schema, security, exception
handlers, response model in the docs) and replaces only the handler: the body is parsed and
validated in one step by pydantic's Rust parser (``model_validate_json``), the model is looked up
by the same ``valid_model_ref`` the dependency used, and every error is raised as the same
exception FastAPI would have raised, so ``app.main``'s handlers write the same error bodies.

The order of the checks is FastAPI's: a body that is not JSON is refused first (400), then the
path parameter (422, with the body's errors), the key and the model (401, 404), then the body's
fields (422). ``tests/app/test_predict_route.py`` compares both handlers on each case.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError

from app.deps import RESOURCE_ID_MAX_LENGTH, valid_model_ref
from app.schemas.models import PredictRequest


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _body_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors located under ``body``, as FastAPI reports them."""
    return [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]


def parse_predict_body(body: bytes, content_type: str) -> tuple[PredictRequest | None, list[dict[str, Any]]]:
    """The request, or the validation errors FastAPI would collect for this body.

    Raises ``RequestValidationError`` at once for a JSON body that does not parse (FastAPI's
    ``json_invalid``, answered 400 before any dependency runs). Only a valid body takes the fast
    parser's word for it: an invalid one is validated again as FastAPI does (decoded, then
    validated as Python objects), because pydantic words the same errors differently in JSON mode
    ("a valid array" for "a valid list") and users and tests read these messages."""
    if not body:
        return None, [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
    decoded: Any = body  # not JSON (or no content type): FastAPI validates the raw bytes and fails
    if _is_json(content_type):
        try:
            return PredictRequest.model_validate_json(body), []
        except ValidationError as exc:
            errors = _body_errors(exc)
            if errors and errors[0]["type"] == "json_invalid":
                raise RequestValidationError(errors[:1], body=body) from None
        decoded = json.loads(body)
    try:
        return PredictRequest.model_validate(decoded, from_attributes=True), []
    except ValidationError as exc:
        return None, _body_errors(exc)


class PredictRoute(APIRoute):
    """``POST /v1/models/{model_id}/predict``: see the module docstring."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            body, errors = parse_predict_body(await request.body(), request.headers.get("content-type", ""))
            model_id = request.path_params["model_id"]
            if len(model_id) > RESOURCE_ID_MAX_LENGTH:  # FastAPI reports it with the body's errors
                raise RequestValidationError([{
                    "type": "string_too_long", "loc": ("path", "model_id"),
                    "msg": f"String should have at most {RESOURCE_ID_MAX_LENGTH} characters", "input": model_id,
                    "ctx": {"max_length": RESOURCE_ID_MAX_LENGTH}}, *errors])
            model = await valid_model_ref(request, model_id)
            if errors:
                raise RequestValidationError(errors)
            return await endpoint(body, model, request)

        return handle
