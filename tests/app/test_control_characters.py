"""NUL and other control characters anywhere in a request are a 4xx, never a database error."""

from __future__ import annotations

import base64


def test_ids_with_nul_are_404(client, auth_a) -> None:  # noqa: ANN001
    for url in ("/v1/jobs/job_%00x", "/v1/teachers/%00", "/v1/datasets/ds_%01", "/v1/models/mdl_%00/artifact"):
        r = client.get(url, headers=auth_a)
        assert r.status_code == 404, (url, r.text)


def test_body_ids_and_headers_with_nul(client, auth_a, job_body) -> None:  # noqa: ANN001
    r = client.post("/v1/jobs", headers=auth_a, json={**job_body, "teacher_id": "tch_\x00"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "teacher_id"
    r = client.post("/v1/jobs", headers=auth_a, json={**job_body, "student": {"base": "x\x00"}})
    assert r.status_code == 422
    r = client.post("/v1/jobs", headers={**auth_a, "Idempotency-Key": "a\tb"}, json=job_body)
    assert r.status_code == 422 and r.json()["error"]["param"] == "idempotency-key"


def test_cursor_with_nul_is_422(client, auth_a) -> None:  # noqa: ANN001
    cursor = base64.urlsafe_b64encode(b"2026-11-25T14:55:58+00:00|job_\x00x").decode()
    r = client.get("/v1/jobs", headers=auth_a, params={"after": cursor})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"


def test_upload_names_with_control_characters(client, auth_a, train_csv_bytes) -> None:  # noqa: ANN001
    r = client.post("/v1/datasets", headers=auth_a, files={"file": ("d.csv", train_csv_bytes)}, data={"name": "a\x00b"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "name"
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="d\x00\x07.csv"\r\n\r\n'
            + train_csv_bytes + b"\r\n--b--\r\n")
    r = client.post("/v1/datasets", headers={**auth_a, "Content-Type": "multipart/form-data; boundary=b"}, content=body)
    assert r.status_code == 201 and r.json()["name"] == "d.csv"
    r = client.post("/v1/teachers", headers=auth_a, json={"uri": "/x", "name": "a\x00"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "name"
