"""Ops endpoints, the error envelope for routing errors, and the OpenAPI document."""

from __future__ import annotations


def test_healthz(client) -> None:  # noqa: ANN001
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_with_reachable_database_and_broker(client) -> None:  # noqa: ANN001
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_reports_an_unreachable_broker(make_client, monkeypatch) -> None:  # noqa: ANN001
    import sys

    monkeypatch.setitem(sys.modules, "worker.celery_app", None)  # use the settings' URL directly
    client = make_client(broker_url="redis://127.0.0.1:1/0")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok" and r.json()["checks"]["broker"].startswith("unavailable")


def test_readyz_reports_an_unreachable_database(make_client) -> None:  # noqa: ANN001
    client = make_client(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["database"].startswith("unavailable")


def test_an_unreachable_database_is_a_503_not_a_500(make_client, auth_a) -> None:  # noqa: ANN001
    """Postgres restarting: every request that needs it answers 503 with Retry-After, the envelope intact."""
    client = make_client(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    r = client.get("/v1/jobs", headers=auth_a)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "database_unavailable" and r.headers["Retry-After"] == "5"


def test_metrics(client, auth_a, job_body) -> None:  # noqa: ANN001
    """Issue 14: without a configured metrics token, job counts (every tenant's) are not shown."""
    client.post("/v1/jobs", headers=auth_a, json=job_body)
    client.get("/v1/jobs/job_missing", headers=auth_a)
    text = client.get("/metrics").text
    assert 'lelp_jobs{status=' not in text
    assert 'lelp_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert 'lelp_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert "lelp_http_request_duration_seconds_bucket" in text


def test_metrics_job_counts_need_the_metrics_token(make_client, auth_a, job_body) -> None:  # noqa: ANN001
    client = make_client(metrics_token="s3cret-metrics")
    client.post("/v1/jobs", headers=auth_a, json=job_body)
    for headers in ({}, {"Authorization": "Bearer wrong"}, auth_a):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", headers
        assert "lelp_jobs" not in r.text
    text = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"}).text
    assert 'lelp_jobs{status="queued"} 1.0' in text
    assert 'lelp_jobs{status="running"} 0.0' in text


def test_routing_errors_use_the_envelope(client, auth_a) -> None:  # noqa: ANN001
    r = client.get("/v1/nothing-here", headers=auth_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.put("/v1/jobs", headers=auth_a)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_and_docs(client) -> None:  # noqa: ANN001
    spec = client.get("/openapi.json").json()
    for path in ("/v1/teachers", "/v1/datasets", "/v1/jobs", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/events",
                 "/v1/models/{model_id}/predict", "/v1/models/{model_id}/artifact", "/readyz", "/metrics"):
        assert path in spec["paths"], path
    upload = spec["paths"]["/v1/teachers"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data", "application/json"}
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    assert client.get("/docs").status_code == 200
