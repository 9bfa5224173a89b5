"""The console's server side: ``/`` goes to it, ``/docs`` needs no CDN, the submit form offers every
field of a job request with the library's defaults, and ``POST /v1/jobs/{id}/retry``."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from app.db import job_states
from app.db.base import utcnow


def test_root_redirects_to_the_console(client) -> None:  # noqa: ANN001
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui"
    assert "Sign in" in client.get("/").text


def test_docs_are_served_without_a_cdn(client) -> None:  # noqa: ANN001
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/docs/static/") for a in assets), assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert "openapi.json" in page.text
    # Swagger UI 5 reads OpenAPI 3.1, which FastAPI writes (Swagger UI 4 shows "no valid version field")
    bundle = client.get("/docs/static/swagger-ui-bundle.js").text
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1") and "3.1" in bundle
    assert client.get("/redoc").status_code == 404  # CDN-only: switched off rather than blank


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("input", "select") and attributes.get("name") and attributes.get("id", "").startswith(("f-", "hp-")):
            self.fields[attributes["name"]] = attributes


def test_the_submit_form_has_every_job_field_with_the_library_defaults(client) -> None:  # noqa: ANN001
    from app.schemas.jobs import Hyperparameters, JobCreate, StudentSpec
    from lelp.config import STUDENT_DEFAULTS, DistillConfig
    from lelp.students.registry import DEFAULT_STUDENT_KIND

    page = client.get("/ui")
    parser = _Inputs()
    parser.feed(page.text)
    expected = ({n for n in JobCreate.model_fields if n not in ("student", "hyperparameters")}
                | {f"student.{n}" for n in StudentSpec.model_fields}
                | {f"hyperparameters.{n}" for n in Hyperparameters.model_fields})
    assert set(parser.fields) == expected
    hp = {name.split(".", 1)[1]: attrs for name, attrs in parser.fields.items() if name.startswith("hyperparameters.")}
    kind = STUDENT_DEFAULTS[DEFAULT_STUDENT_KIND]
    for name in ("learning_rate", "batch_size", "tau", "patience"):
        assert float(hp[name]["value"]) == kind[name], name
    assert int(hp["max_length"]["value"]) == DistillConfig.max_length and int(hp["seed"]["value"]) == 0
    assert hp["epochs"]["value"] == "" and hp["epochs"]["placeholder"] == "auto"  # budgeted by data size
    # the per-kind defaults the page swaps in are data (a JSON block), not an inline script
    spec = json.loads(re.search(r'<script type="application/json" id="form-spec">(.*?)</script>', page.text,
                                re.S).group(1))
    assert spec["kind_defaults"]["transformer"]["learning_rate"] == STUDENT_DEFAULTS["transformer"]["learning_rate"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_retry_submits_a_new_job_with_the_same_inputs(client, auth_a, job_body, db, enqueued) -> None:  # noqa: ANN001
    body = {**job_body, "name": "sst-2 <b>first</b> try", "device": "cpu",
            "hyperparameters": {"epochs": 2, "subclasses": 3, "seed": 7}}
    first = client.post("/v1/jobs", headers=auth_a, json=body).json()
    r = client.post(f"/v1/jobs/{first['id']}/retry", headers=auth_a)
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_finished"  # still queued

    assert job_states.claim(db, first["id"], utcnow())
    job_states.finish(db, first["id"], "failed", error={"code": "boom", "message": "it broke"})
    db.commit()
    r = client.post(f"/v1/jobs/{first['id']}/retry", headers=auth_a)
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["id"] != first["id"] and r.headers["Location"] == f"/v1/jobs/{again['id']}"
    assert again["status"] == "queued" and again["attempts"] == 0
    assert first["name"] == "sst-2 <b>first</b> try"
    for name in ("name", "teacher_id", "train_dataset_id", "eval_dataset_id", "validation_dataset_id", "method",
                 "student", "device", "hyperparameters"):
        assert again[name] == first[name], name
    assert [job_id for job_id, _ in enqueued] == [first["id"], again["id"]]
    assert client.get(f"/v1/jobs/{first['id']}", headers=auth_a).json()["status"] == "failed"  # kept as it was

    # a wrong key cannot retry it
    assert client.post(f"/v1/jobs/{first['id']}/retry", headers={"Authorization": "Bearer lelp_no"}).status_code == 401


def test_retry_of_a_job_whose_input_was_deleted_is_a_409(client, auth_a, job_body, db) -> None:  # noqa: ANN001
    job = client.post("/v1/jobs", headers=auth_a, json=job_body).json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth_a).json()["status"] == "cancelled"
    assert client.delete(f"/v1/datasets/{job['train_dataset_id']}", headers=auth_a).status_code == 204
    r = client.post(f"/v1/jobs/{job['id']}/retry", headers=auth_a)
    assert r.status_code == 409 and r.json()["error"]["code"] == "input_deleted"
    assert "train dataset" in r.json()["error"]["message"]


def test_lelp_serve_prints_the_console_and_the_export_lines(tmp_path) -> None:
    from app.settings import Settings
    from worker.embedded import startup_banner

    settings = Settings(data_dir=tmp_path)
    first = startup_banner(settings, "0.0.0.0", 8123, "lelp_abc", True, tmp_path / "worker.log")
    lines = first.splitlines()
    assert "Console: http://127.0.0.1:8123/ui" in first  # a wildcard address is not one to open
    assert "  export LELP_API_URL=http://127.0.0.1:8123" in lines and "  export LELP_API_KEY=lelp_abc" in lines
    later = startup_banner(settings, "127.0.0.1", 8000, "lelp_abc", False, tmp_path / "worker.log")
    assert "lelp_abc" not in later  # shown once only; later starts point at the key file
    assert f"  export LELP_API_KEY=$(cat {tmp_path / 'api_key'})" in later.splitlines()


def test_a_job_name_is_optional_and_keeps_old_idempotency_hashes(client, auth_a, job_body) -> None:  # noqa: ANN001
    import hashlib

    from app.schemas.jobs import JobCreate
    from app.services.jobs import request_hash

    unnamed = client.post("/v1/jobs", headers=auth_a, json=job_body).json()
    assert unnamed["name"] is None
    # a body without a name hashes as before jobs had names (the canonical JSON without the field)
    before = {k: v for k, v in JobCreate(**job_body).model_dump(mode="json").items() if k != "name"}
    digest = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert request_hash(JobCreate(**job_body)) == digest
    assert request_hash(JobCreate(**job_body, name="x")) != digest
    too_long = client.post("/v1/jobs", headers=auth_a, json={**job_body, "name": "x" * 201})
    assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "name"


def test_without_the_docs_package_the_api_still_starts(make_client, monkeypatch) -> None:  # noqa: ANN001
    """An install without swagger-ui-bundle-v2 (e.g. a GPU worker's slim wheel set) still serves the API."""
    import sys

    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)  # import fails
    client = make_client()
    r = client.get("/docs")
    assert r.status_code == 503 and "swagger-ui-bundle-v2" in r.text and "/openapi.json" in r.text
    assert client.get("/openapi.json").status_code == 200 and client.get("/readyz").status_code == 200
