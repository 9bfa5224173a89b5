"""The job state machine has one home: ``app.db.job_states``, one conditional UPDATE per change."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

from app.db import job_states
from app.db.base import utcnow
from app.db.models import Job

ROOT = Path(__file__).resolve().parents[2]


def _sources(*folders: str) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for f in folders for p in (ROOT / f).rglob("*.py")}


def test_only_job_states_updates_a_job_row() -> None:
    offenders = [path for path, text in _sources("app", "worker").items()
                 if "update(Job)" in text and path != "app/db/job_states.py"]
    assert offenders == []


def test_the_sweeper_and_embedded_server_write_no_sql_and_embedded_imports_no_worker() -> None:
    for path in ("app/services/sweeper.py", "app/services/recovery.py"):
        text = (ROOT / path).read_text()
        assert "sqlalchemy" not in text and "sa." not in text, path
    tree = ast.parse((ROOT / "worker/embedded.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m == "worker" or m.startswith("worker.")], imported


def test_state_changes_do_not_commit() -> None:
    assert ".commit()" not in (ROOT / "app/db/job_states.py").read_text()
    assert ".commit()" not in (ROOT / "app/db/repositories.py").read_text()


def test_a_stale_claim_wins_once_and_a_fresh_one_loses(client, auth_a, job_body, db) -> None:  # noqa: ANN001
    job_id = client.post("/v1/jobs", headers=auth_a, json=job_body).json()["id"]
    assert job_states.claim(db, job_id, utcnow())
    db.commit()
    assert not job_states.claim(db, job_id, utcnow() - timedelta(minutes=5)), "a live worker holds it"
    later = utcnow() + timedelta(seconds=1)  # as if the heartbeat went stale
    assert job_states.claim(db, job_id, later)
    db.commit()
    db.expire_all()
    assert db.get(Job, job_id).attempts == 2
    assert job_states.requeue_stale(db, job_id, utcnow() + timedelta(seconds=1))
    assert not job_states.requeue_stale(db, job_id, utcnow() + timedelta(seconds=1)), "already queued"
    db.commit()
    db.expire_all()
    job = db.get(Job, job_id)
    assert job.status == "queued" and job.heartbeat_at is None
    types = [e["type"] for e in client.get(f"/v1/jobs/{job_id}/events", headers=auth_a).json()["data"]]
    assert types == ["created", "requeued"]
