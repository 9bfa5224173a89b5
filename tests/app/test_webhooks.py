"""``webhook_url`` at submit: only hosts the operator allowed, never anything else (issue 19).

Delivery itself (signature, retries, events) is tested in tests/worker/test_webhooks.py and,
through a real worker, in tests/e2e/test_webhooks_flow.py.
"""

from __future__ import annotations

import pytest

from app.services import webhooks

SECRET = "s3cret"


@pytest.fixture
def hooked(make_client):  # noqa: ANN001, ANN201
    return make_client(webhook_allowed_hosts="hooks.example.com,127.0.0.1:9000", webhook_secret=SECRET)


def test_webhooks_are_off_unless_the_operator_allows_hosts(client, auth_a, job_body, enqueued) -> None:  # noqa: ANN001
    r = client.post("/v1/jobs", headers=auth_a, json={**job_body, "webhook_url": "https://hooks.example.com/x"})
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("webhook_not_allowed", "webhook_url")
    assert "LELP_WEBHOOK_ALLOWED_HOSTS" in r.json()["error"]["message"]
    assert enqueued == []


@pytest.mark.parametrize("url", [
    "https://evil.example.com/x",            # another host
    "https://hooks.example.com.evil.io/x",   # a suffix trick
    "http://127.0.0.1:9001/x",               # an allowed host, another port
    "http://127.0.0.1/x",                    # only 127.0.0.1:9000 is allowed
    "ftp://hooks.example.com/x",
    "https://user:pw@hooks.example.com/x",
    "hooks.example.com/x",
    "http://[::1/x",
])
def test_urls_outside_the_allowed_hosts_are_refused(hooked, upload_teacher, upload_dataset, auth_a, enqueued,
                                                    url) -> None:  # noqa: ANN001
    body = {"teacher_id": upload_teacher(auth_a)["id"], "train_dataset_id": upload_dataset(auth_a)["id"],
            "student": {"kind": "ngram"}, "webhook_url": url}
    r = hooked.post("/v1/jobs", headers=auth_a, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "webhook_not_allowed", r.text
    assert enqueued == []


def test_an_allowed_url_is_kept_and_a_cancel_owes_its_delivery(hooked, upload_teacher, upload_dataset, auth_a,
                                                                enqueued, monkeypatch) -> None:  # noqa: ANN001
    import app.queue

    sent: list[str] = []
    monkeypatch.setattr(app.queue, "enqueue_webhook", sent.append)
    body = {"teacher_id": upload_teacher(auth_a)["id"], "train_dataset_id": upload_dataset(auth_a)["id"],
            "student": {"kind": "ngram"}}
    for url in ("https://HOOKS.example.com/lelp?x=1", "http://127.0.0.1:9000/hook"):
        r = hooked.post("/v1/jobs", headers=auth_a, json={**body, "webhook_url": url})
        assert r.status_code == 202, r.text
        assert r.json()["webhook_url"] == url and r.json()["webhook_state"] is None
    job_id = r.json()["id"]
    r = hooked.post(f"/v1/jobs/{job_id}/cancel", headers=auth_a)
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["webhook_state"] == "pending"
    assert sent == [job_id]  # handed to a worker, which delivers it
    plain = hooked.post("/v1/jobs", headers=auth_a, json=body).json()
    assert hooked.post(f"/v1/jobs/{plain['id']}/cancel", headers=auth_a).json()["webhook_state"] is None
    assert sent == [job_id]


def test_no_secret_no_webhooks(make_client, upload_teacher, upload_dataset, auth_a) -> None:  # noqa: ANN001
    client = make_client(webhook_allowed_hosts="hooks.example.com")
    body = {"teacher_id": upload_teacher(auth_a)["id"], "train_dataset_id": upload_dataset(auth_a)["id"],
            "webhook_url": "https://hooks.example.com/x"}
    r = client.post("/v1/jobs", headers=auth_a, json=body)
    assert r.status_code == 422 and "LELP_WEBHOOK_SECRET" in r.json()["error"]["message"]


def test_signature_round_trip() -> None:
    body = b'{"type":"job.succeeded"}'
    header = webhooks.sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert webhooks.verify_signature(SECRET, header, body, now=1_700_000_100)
    assert not webhooks.verify_signature(SECRET, header, body, now=1_700_000_000 + 301)  # a replay, too late
    assert not webhooks.verify_signature(SECRET, header, body.replace(b"succeeded", b"failed"), now=1_700_000_000)
    assert not webhooks.verify_signature(SECRET, "garbage", body)
