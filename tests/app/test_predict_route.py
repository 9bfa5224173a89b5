"""Predict's own handler (app/api/predict_route.py) answers every request as FastAPI's generic one did."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter

from app.api import models as models_api
from app.deps import PREDICT_SECURITY
from app.schemas.models import PredictResponse

VALID = {"inputs": ["a good movie", "an awful plot"]}
JSON = {"Content-Type": "application/json"}

#: (name, path suffix or None for the test model, headers beyond the key, body bytes)
CASES = [
    ("valid", None, JSON, json.dumps(VALID).encode()),
    ("valid, +json media type with a charset", None, {"Content-Type": "application/vnd.api+json; charset=utf-8"},
     json.dumps(VALID).encode()),
    ("valid int8", None, JSON, json.dumps({**VALID, "quantize": "int8"}).encode()),
    ("truncated JSON", None, JSON, b'{"inputs": ['),
    ("not JSON at all", None, JSON, b"inputs=a"),
    ("empty body", None, JSON, b""),
    ("text/plain", None, {"Content-Type": "text/plain"}, json.dumps(VALID).encode()),
    ("form media type", None, {"Content-Type": "application/x-www-form-urlencoded"}, b"inputs=a"),
    ("no content type", None, {}, json.dumps(VALID).encode()),
    ("a JSON list", None, JSON, b'["a"]'),
    ("no inputs", None, JSON, b"{}"),
    ("empty inputs", None, JSON, b'{"inputs": []}'),
    ("numbers", None, JSON, b'{"inputs": [1, 2]}'),
    ("a null input", None, JSON, b'{"inputs": ["ok", null]}'),
    ("a string, not a list", None, JSON, b'{"inputs": "just a string"}'),
    ("a pair without text_pair", None, JSON, b'{"inputs": [{"text": "a"}]}'),
    ("pairs for a single-text model", None, JSON, b'{"inputs": [{"text": "a", "text_pair": "b"}]}'),
    ("an unknown field", None, JSON, b'{"inputs": ["a"], "top_k": 3}'),
    ("an unknown quantize", None, JSON, b'{"inputs": ["a"], "quantize": "int4"}'),
    ("two problems", None, JSON, b'{"inputs": [], "top_k": 3}'),
    ("unknown model", "mdl_nope", JSON, json.dumps(VALID).encode()),
    ("unknown model and a bad body", "mdl_nope", JSON, b"{}"),
    ("model id too long", "m" * 65, JSON, json.dumps(VALID).encode()),
    ("model id too long and a bad body", "m" * 65, JSON, b"{}"),
]


def _answer(client, model_id: str, auth: dict, headers: dict, body: bytes) -> tuple:  # noqa: ANN001
    r = client.post(f"/v1/models/{model_id}/predict", headers={**auth, **headers}, content=body)
    data = r.json()
    if r.status_code == 200:
        return 200, [p["label"] for p in data["predictions"]], r.headers["content-type"]
    error = data["error"]
    return r.status_code, error["code"], error["param"], error["message"]


def _route_predict_through_fastapi(app) -> None:  # noqa: ANN001
    """Put the same endpoint, declared as a plain FastAPI route, before every other route."""
    plain = APIRouter(prefix="/v1/models")
    plain.add_api_route("/{model_id}/predict", models_api.predict, methods=["POST"],
                        response_model=PredictResponse, openapi_extra=PREDICT_SECURITY)
    app.include_router(plain)
    app.router.routes.insert(0, app.router.routes.pop())


@pytest.fixture
def both(make_client, auth_a, make_model, job_body):  # noqa: ANN001, ANN201
    """The app as shipped, and the same app with predict on FastAPI's generic request handler."""
    model = make_model(auth_a, job_body)
    fast, generic = make_client(), make_client()
    _route_predict_through_fastapi(generic.app)
    return model["id"], fast, generic


def test_the_same_answer_as_fastapis_handler(both, auth_a) -> None:  # noqa: ANN001
    """Every case in one test: one model and two apps for all (a fixture per case cost 18 s)."""
    default_id, fast, generic = both
    mismatches = []
    for name, model_id, headers, body in CASES:
        ours = _answer(fast, model_id or default_id, auth_a, headers, body)
        theirs = _answer(generic, model_id or default_id, auth_a, headers, body)
        if ours[:2] == (400, "invalid_json"):  # pydantic's parser words the syntax error better than json's
            same = (theirs[:3] == ours[:3] and "not valid JSON" in ours[3] and "Invalid JSON" in ours[3]
                    and "JSON decode error" in theirs[3])
        else:
            same = ours == theirs
        if not same:
            mismatches.append(f"{name}: ours {ours} vs FastAPI's {theirs}")
    assert not mismatches, "\n".join(mismatches)
    assert _answer(fast, default_id, auth_a, JSON, CASES[0][3])[0] == 200


def test_keys_tenants_and_the_openapi(both, auth_b) -> None:  # noqa: ANN001
    model_id, fast, generic = both
    for auth in ({}, {"Authorization": "Bearer wrong"}):  # the key before the body, whatever the body
        for body in (b"{}", b"not json", json.dumps(VALID).encode()):
            ours = _answer(fast, model_id, auth, JSON, body)
            assert ours[0] == 401 and ours == _answer(generic, model_id, auth, JSON, body)
    assert _answer(fast, model_id, auth_b, JSON, json.dumps(VALID).encode())[:2] == (404, "model_not_found")
    # FastAPI still declares the body, the response and the key
    ours = fast.get("/openapi.json").json()["paths"]["/v1/models/{model_id}/predict"]["post"]
    assert ours["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    assert ours["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictResponse")
    assert ours["security"] == [{"HTTPBearer": []}]
