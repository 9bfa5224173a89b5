"""Fixtures for the worker's unit tests: SQLite built by the Alembic migrations, a local store.

The runner is called directly (no Celery, no broker); ``enqueue_job`` is replaced by a
recorder so the sweeper's sends can be checked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.db.base import new_id, utcnow
from app.db.models import Dataset, Job, Teacher, Tenant
from app.db.session import session_scope
from app.settings import Settings, get_settings
from app.storage import ArtifactStore

# A job's default hyperparameters here: one epoch, no teacher-scored variants (``augment: "auto"``
# would add 6 a row at this size and 7x the rows to train: the worker's tests are about the job's
# life, not its data; the variants' path is tested in tests/lelp and the e2e flows).
DEFAULT_HYPERPARAMETERS = {"subclasses": 2, "epochs": 1, "seed": 0, "augment": 0}


@pytest.fixture
def worker_settings(tmp_path, monkeypatch) -> Settings:
    """Settings for an empty embedded setup under ``tmp_path``, schema migrated."""
    from app.db.migrate import upgrade

    monkeypatch.setenv("LELP_DATA_DIR", str(tmp_path / "data"))
    for name in ("LELP_DATABASE_URL", "LELP_BROKER_URL", "LELP_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, str]]:
    """Records the recovery sweep's re-sends (``app.services.jobs.send_job``) instead of talking to a broker."""
    calls: list[tuple[str, str]] = []
    import app.services.jobs

    monkeypatch.setattr(app.services.jobs, "send_job", lambda job_id, device="cpu": calls.append((job_id, device)))
    return calls


@pytest.fixture
def make_job(worker_settings, tiny_teacher_dir, tiny_train_csv, tiny_eval_csv) -> Callable[..., str]:
    """Insert a tenant, the tiny teacher, train/eval datasets (copied into the store) and a queued job."""
    store = ArtifactStore(worker_settings.artifact_url)

    def factory(*, hyperparameters: dict[str, Any] | None = None, train_csv: Path | None = None,
                teacher_dir: Path | None = None, **job_fields: Any) -> str:
        now = utcnow()
        tenant_id, teacher_id, train_id, eval_id, job_id = (new_id(p) for p in ("ten", "tch", "ds", "ds", "job"))
        store.put_dir(teacher_dir or tiny_teacher_dir, f"teachers/{teacher_id}")
        store.put_file(train_csv or tiny_train_csv, f"datasets/{train_id}/data.csv")
        store.put_file(tiny_eval_csv, f"datasets/{eval_id}/data.csv")
        with session_scope(worker_settings.database_url) as session:
            session.add(Tenant(id=tenant_id, name=tenant_id, created_at=now))
            session.flush()
            session.add(Teacher(id=teacher_id, tenant_id=tenant_id, name="tiny", uri=f"teachers/{teacher_id}",
                                architecture="BertForSequenceClassification", model_type="bert", num_labels=2,
                                labels=["negative", "positive"], hidden_size=32, parameters=None, sha256="0" * 64,
                                created_at=now))
            for ds_id in (train_id, eval_id):
                session.add(Dataset(id=ds_id, tenant_id=tenant_id, name=ds_id, uri=f"datasets/{ds_id}/data.csv",
                                    format="csv", text_column="text", text_pair_column=None, label_column="label",
                                    rows=0, labelled_rows=0, label_counts={}, columns=["text", "label"],
                                    sha256="0" * 64, size_bytes=0, created_at=now))
            session.flush()
            fields = {"status": "queued", "attempts": 0, "cancel_requested": False, "device": "cpu",
                      "method": "lelp", "student": {"kind": "ngram"}, **job_fields}
            session.add(Job(id=job_id, tenant_id=tenant_id, teacher_id=teacher_id, train_dataset_id=train_id,
                            eval_dataset_id=eval_id, progress={}, created_at=now, updated_at=now,
                            hyperparameters=hyperparameters or dict(DEFAULT_HYPERPARAMETERS),
                            **fields))
        return job_id

    return factory


def load_job(settings: Settings, job_id: str) -> Job:
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def events(settings: Settings, job_id: str) -> list[tuple[str, dict | None]]:
    from app.db.repositories import list_events

    with session_scope(settings.database_url) as session:
        return [(e.type, e.data) for e in list_events(session, job_id, after=None, limit=1000)]


@pytest.fixture
def store(worker_settings) -> ArtifactStore:
    return ArtifactStore(worker_settings.artifact_url)


