"""Tenant isolation on every endpoint (404, never 403), hashed keys that are never logged, limits."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading

import httpx
import numpy as np
import sqlalchemy as sa

ENDPOINTS = [
    ("GET", "/v1/teachers/{teacher}", None),
    ("DELETE", "/v1/teachers/{teacher}", None),
    ("GET", "/v1/datasets/{dataset}", None),
    ("DELETE", "/v1/datasets/{dataset}", None),
    ("GET", "/v1/jobs/{job}", None),
    ("GET", "/v1/jobs/{done_job}", None),
    ("POST", "/v1/jobs/{job}/cancel", None),
    ("POST", "/v1/jobs/{done_job}/cancel", None),
    ("GET", "/v1/jobs/{job}/events", None),
    ("GET", "/v1/models/{model}", None),
    ("POST", "/v1/models/{model}/predict", {"inputs": ["a good film"]}),
    ("GET", "/v1/models/{model}/artifact", None),
    ("DELETE", "/v1/models/{model}", None),
]


def test_every_endpoint_hides_other_tenants_rows(live_server, key_a, key_b, make_resources, db, caplog,
                                                 figures) -> None:
    """Real HTTP, a full flow for two tenants; A probes all of B's ids; the server log never shows a key."""
    caplog.set_level(logging.DEBUG)
    server, _ = live_server(log_level="debug")
    auth_a, auth_b = {"Authorization": f"Bearer {key_a}"}, {"Authorization": f"Bearer {key_b}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        http.app = server.app  # make_resources reads the store from ``client.app``
        a, b = make_resources(http, auth_a), make_resources(http, auth_b)
        before = {name: http.get(f"/v1/{_kind(name)}/{rid}", headers=auth_b).json() for name, rid in b.items()}
        probes = 0
        for method, template, body in ENDPOINTS:
            url = template.format(**b)
            r = http.request(method, url, headers=auth_a, json=body)
            probes += 1
            assert r.status_code == 404, (method, url, r.status_code, r.text)
            assert r.json()["error"]["code"].endswith("_not_found")
            # byte for byte what an id that never existed answers (but for the id itself)
            fake = url.replace(url.split("/")[3], url.split("/")[3].split("_")[0] + "_" + "0" * 32)
            missing = http.request(method, fake, headers=auth_a, json=body)
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == r.json()["error"]["code"]
        for change in ({"teacher_id": b["teacher"]}, {"train_dataset_id": b["dataset"]},
                       {"eval_dataset_id": b["dataset"]}):
            job = {"teacher_id": a["teacher"], "train_dataset_id": a["dataset"], **change}
            r = http.post("/v1/jobs", headers=auth_a, json=job)
            probes += 1
            assert r.status_code == 404 and r.json()["error"]["code"].endswith("_not_found"), r.text
        leaks = 0
        for kind in ("teachers", "datasets", "jobs", "models"):
            page_b = http.get(f"/v1/{kind}", headers=auth_b, params={"limit": 1}).json()
            for params in ({"limit": 100}, {"limit": 100, "after": page_b["next_cursor"]}):
                rows = http.get(f"/v1/{kind}", headers=auth_a, params={k: v for k, v in params.items() if v}).json()
                leaks += len({row["id"] for row in rows["data"]} & set(b.values()))
            probes += 2
        for status in ("queued", "succeeded", "cancelled"):
            rows = http.get("/v1/jobs", headers=auth_a, params={"status": status}).json()["data"]
            leaks += len({row["id"] for row in rows} & set(b.values()))
        assert leaks == 0
        after = {name: http.get(f"/v1/{_kind(name)}/{rid}", headers=auth_b).json() for name, rid in b.items()}
        assert after == before  # A's DELETEs and cancels changed nothing of B's
        r = http.get("/v1/jobs", headers={"Authorization": f"Bearer {key_a}x"})  # a wrong key, for the log
        assert r.status_code == 401

    stored = db.execute(sa.text("SELECT prefix, key_hash FROM api_keys")).all()
    assert len(stored) == 2
    for key in (key_a, key_b):
        assert all(key not in f"{prefix} {digest}" for prefix, digest in stored)
        assert any(digest == hashlib.sha256(key.encode()).hexdigest() for _, digest in stored)
    assert len(caplog.records) > 20  # the server really logged the flow (access log, debug)
    secrets = (key_a, key_b, key_a[12:], key_b[12:])
    logged = [record for record in caplog.records
              if any(s in record.getMessage() or s in str(record.args) for s in secrets)]
    assert logged == []
    figures(f"endpoints probed {probes} / answered other than 404 0 / rows leaked in lists {leaks} / "
            f"log records {len(caplog.records)}, with a key {len(logged)}")


def _kind(name: str) -> str:
    return {"teacher": "teachers", "dataset": "datasets", "job": "jobs", "done_job": "jobs",
            "model": "models"}[name]


# --- limits ------------------------------------------------------------------------------------


def test_each_limit_is_configurable(make_client, auth_a, make_resources, train_csv_bytes, teacher_tar_gz,
                                    figures) -> None:
    client = make_client(max_upload_bytes=5_000, max_dataset_rows=10, max_text_chars=50,
                         max_concurrent_jobs_per_tenant=2, max_predict_inputs=3, max_archive_files=3)
    checked = []

    def post_dataset(content: bytes):
        return client.post("/v1/datasets", headers=auth_a, files={"file": ("d.csv", content)})

    assert post_dataset(b"text,label\n" + b"ok,positive\n" * 10).status_code == 201
    r = post_dataset(b"text,label\n" + b"ok,positive\n" * 11)
    assert r.status_code == 422 and "10" in r.json()["error"]["message"]
    checked.append("max_dataset_rows")
    assert post_dataset(b"text,label\n" + b"x" * 50 + b",positive\n").status_code == 201
    assert post_dataset(b"text,label\n" + b"x" * 51 + b",positive\n").status_code == 422
    checked.append("max_text_chars (dataset)")
    r = post_dataset(b"text,label\n" + b"a,positive\n" * 600)
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    checked.append("max_upload_bytes")
    r = client.post("/v1/teachers", headers=auth_a, files={"file": ("t.tar.gz", teacher_tar_gz)})
    assert r.status_code == 413  # the tiny teacher is larger than 5 kB
    big = make_client(max_archive_files=3, max_concurrent_jobs_per_tenant=2, max_predict_inputs=3,
                      max_text_chars=50)
    r = big.post("/v1/teachers", headers=auth_a, files={"file": ("t.tar.gz", teacher_tar_gz)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_files"
    checked.append("max_archive_files")

    roomy = make_client()
    res = make_resources(roomy, auth_a)  # one queued job, one finished with a model
    job = {"teacher_id": res["teacher"], "train_dataset_id": res["dataset"]}
    assert big.post("/v1/jobs", headers=auth_a, json=job).status_code == 202  # 2 active now
    r = big.post("/v1/jobs", headers=auth_a, json=job)
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_jobs"
    assert big.post(f"/v1/jobs/{res['job']}/cancel", headers=auth_a).status_code == 202
    assert big.post("/v1/jobs", headers=auth_a, json=job).status_code == 202
    checked.append("max_concurrent_jobs_per_tenant")

    url = f"/v1/models/{res['model']}/predict"
    assert big.post(url, headers=auth_a, json={"inputs": ["a"] * 3}).status_code == 200
    r = big.post(url, headers=auth_a, json={"inputs": ["a"] * 4})
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_many_inputs"
    checked.append("max_predict_inputs")
    assert big.post(url, headers=auth_a, json={"inputs": ["x" * 50]}).status_code == 200
    r = big.post(url, headers=auth_a, json={"inputs": ["x" * 51]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "input_too_long"
    checked.append("max_text_chars (predict)")
    figures(f"limits checked {len(checked)}: {', '.join(checked)}")


class _Recorder:
    """Wraps a predictor and records how many rows each forward pass got."""

    def __init__(self, predictor) -> None:
        self.predictor, self.labels, self.batches = predictor, predictor.labels, []
        self.lock = threading.Lock()

    def predict_proba(self, texts, text_pairs=None):
        with self.lock:
            self.batches.append(len(texts))
        return self.predictor.predict_proba(texts, text_pairs)


def test_predict_max_batch_bounds_every_forward_pass(tmp_path, student_dir, figures) -> None:
    """Concurrent requests of 3 and 4 rows, max batch 4: merging never makes a forward pass over 4 rows."""
    from app.services.inference import InferenceService, _Loaded
    from app.storage import ArtifactStore
    from lelp.artifacts import load_predictor

    recorder = _Recorder(load_predictor(student_dir))
    service = InferenceService(ArtifactStore(str(tmp_path)), cache_dir=tmp_path, cache_size=2, max_batch=4)
    service._load_sync = lambda model_id, uri: _Loaded(predictor=recorder, labels=recorder.labels)
    alone = np.array([r["probabilities"]["positive"] for r in asyncio.run(
        service.predict("m", "u", [f"film {i}" for i in range(4)]))])

    async def main() -> list:
        requests = [[f"film {i}" for i in range(4)]] + [[f"film {i}", "good", "bad"] for i in range(12)]
        return list(zip(requests, await asyncio.gather(*(service.predict("m", "u", t) for t in requests)),
                        strict=True))

    recorder.batches.clear()
    results = asyncio.run(main())
    service.close()
    assert max(recorder.batches) <= 4, recorder.batches
    assert sum(recorder.batches) == 4 + 12 * 3
    for texts, predictions in results:  # split batches still give each request its own rows
        assert len(predictions) == len(texts)
        if len(texts) == 4:
            got = np.array([p["probabilities"]["positive"] for p in predictions])
            assert np.allclose(got, alone, atol=1e-5)
    figures(f"requests 13 (40 rows) / max batch 4 / largest forward {max(recorder.batches)} / "
            f"forwards {len(recorder.batches)}")
