"""Tenant isolation: every endpoint answers 404 for another tenant's ids; lists never leak."""

from __future__ import annotations

import pytest


@pytest.fixture
def b_resources(client, auth_b, upload_teacher, upload_dataset, make_model) -> dict:  # noqa: ANN001
    teacher, dataset = upload_teacher(auth_b), upload_dataset(auth_b)
    body = {"teacher_id": teacher["id"], "train_dataset_id": dataset["id"]}
    model = make_model(auth_b, body)
    queued = client.post("/v1/jobs", headers=auth_b, json=body).json()
    return {"teacher": teacher["id"], "dataset": dataset["id"], "job": queued["id"], "model": model["id"],
            "done_job": model["job_id"]}


ENDPOINTS = [
    ("GET", "/v1/teachers/{teacher}", None),
    ("DELETE", "/v1/teachers/{teacher}", None),
    ("GET", "/v1/datasets/{dataset}", None),
    ("DELETE", "/v1/datasets/{dataset}", None),
    ("GET", "/v1/jobs/{job}", None),
    ("POST", "/v1/jobs/{job}/cancel", None),
    ("GET", "/v1/jobs/{job}/events", None),
    ("GET", "/v1/jobs/{done_job}", None),
    ("GET", "/v1/models/{model}", None),
    ("POST", "/v1/models/{model}/predict", {"inputs": ["hello"]}),
    ("GET", "/v1/models/{model}/artifact", None),
    ("DELETE", "/v1/models/{model}", None),
]


def test_other_tenants_ids_are_404_everywhere(client, auth_a, auth_b, b_resources) -> None:  # noqa: ANN001
    for method, template, body in ENDPOINTS:
        url = template.format(**b_resources)
        r = client.request(method, url, headers=auth_a, json=body)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["error"]["code"].endswith("_not_found")
        # exactly what a missing id answers, so existence does not leak
        missing = client.request(method, url.replace(url.split("/")[3], url.split("/")[3][:4] + "0" * 32),
                                 headers=auth_a, json=body)
        assert missing.status_code == 404
    # and nothing of B's changed
    for kind in ("teacher", "dataset", "model"):
        assert client.get(f"/v1/{kind}s/{b_resources[kind]}", headers=auth_b).status_code == 200
    assert client.get(f"/v1/jobs/{b_resources['job']}", headers=auth_b).json()["status"] == "queued"


def test_a_cannot_use_bs_inputs_in_a_job(client, auth_a, upload_teacher, upload_dataset, b_resources) -> None:  # noqa: ANN001, E501
    own_teacher, own_dataset = upload_teacher(auth_a), upload_dataset(auth_a)
    for body in ({"teacher_id": b_resources["teacher"], "train_dataset_id": own_dataset["id"]},
                 {"teacher_id": own_teacher["id"], "train_dataset_id": b_resources["dataset"]},
                 {"teacher_id": own_teacher["id"], "train_dataset_id": own_dataset["id"],
                  "eval_dataset_id": b_resources["dataset"]}):
        r = client.post("/v1/jobs", headers=auth_a, json=body)
        assert r.status_code == 404, r.text


def test_lists_never_show_other_tenants_rows(client, auth_a, auth_b, b_resources) -> None:  # noqa: ANN001
    for resource in ("teachers", "datasets", "jobs", "models"):
        assert client.get(f"/v1/{resource}", headers=auth_a).json()["data"] == [], resource
        assert client.get(f"/v1/{resource}", headers=auth_b).json()["data"], resource
    for status in ("queued", "succeeded"):
        assert client.get("/v1/jobs", headers=auth_a, params={"status": status}).json()["data"] == []
