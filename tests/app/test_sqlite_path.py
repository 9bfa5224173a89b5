"""The embedded default's database: the whole API flow on SQLite, schema from Alembic."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.db import migrate
from app.db.session import make_engine, make_sessionmaker
from app.deps import get_enqueuer
from app.main import create_app
from app.security import create_api_key
from app.settings import Settings


@pytest.fixture
def sqlite_client(tmp_path):  # noqa: ANN001, ANN201
    settings = Settings(data_dir=tmp_path / "lelp", broker_url="redis://127.0.0.1:6379/15")
    assert settings.database_url == f"sqlite:///{tmp_path / 'lelp' / 'lelp.db'}"
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as session:
        key = create_api_key(session, "local")
    engine.dispose()
    app = create_app(settings)
    sent: list[str] = []
    app.dependency_overrides[get_enqueuer] = lambda: (lambda job: sent.append(job.id))
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key}"}, sent


def test_flow_on_sqlite(sqlite_client, teacher_tar_gz, train_csv_bytes) -> None:  # noqa: ANN001
    client, auth, sent = sqlite_client
    teacher = client.post("/v1/teachers", headers=auth, files={"file": ("t.tar.gz", teacher_tar_gz)})
    assert teacher.status_code == 201, teacher.text
    dataset = client.post("/v1/datasets", headers=auth, files={"file": ("train.csv", train_csv_bytes)})
    assert dataset.status_code == 201, dataset.text
    body = {"teacher_id": teacher.json()["id"], "train_dataset_id": dataset.json()["id"], "method": "kd"}
    first = client.post("/v1/jobs", headers={**auth, "Idempotency-Key": "k1"}, json=body)
    again = client.post("/v1/jobs", headers={**auth, "Idempotency-Key": "k1"}, json=body)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    assert sent == [first.json()["id"]]
    assert client.get("/v1/jobs", headers=auth, params={"status": "queued"}).json()["data"][0]["id"] == sent[0]
    assert client.post(f"/v1/jobs/{sent[0]}/cancel", headers=auth).json()["status"] == "cancelled"
    assert client.get("/v1/jobs", headers=auth, params={"status": "queued"}).json()["data"] == []
    assert client.delete(f"/v1/teachers/{teacher.json()['id']}", headers=auth).status_code == 204
    assert client.get(f"/v1/jobs/{sent[0]}", headers=auth).json()["teacher_id"] is None  # FK SET NULL on SQLite


def test_timestamps_and_pagination_on_sqlite(sqlite_client, teacher_tar_gz, train_csv_bytes) -> None:  # noqa: ANN001
    client, auth, _sent = sqlite_client
    ids = [client.post("/v1/datasets", headers=auth, files={"file": (f"d{i}.csv", train_csv_bytes)}).json()["id"]
           for i in range(5)]
    seen, after = [], None
    while True:
        page = client.get("/v1/datasets", headers=auth, params={"limit": 2} | ({"after": after} if after else {}))
        body = page.json()
        assert all(d["created_at"].endswith(("Z", "+00:00")) for d in body["data"])  # read back tz-aware
        seen += [d["id"] for d in body["data"]]
        if not body["has_more"]:
            break
        after = body["next_cursor"]
    assert seen == list(reversed(ids))
