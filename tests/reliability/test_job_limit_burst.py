"""Issue 14: the per-tenant job limit holds under a burst on SQLite (the embedded default) and Postgres.

Threads call ``create_job`` at once through their own sessions, as concurrent requests do.
Before the fix SQLite let the count of every request run before any insert (a limit of 4
created 8 jobs out of 1,000 submissions).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

LIMIT = 4
BURST = 200


def _seed(sessionmaker) -> str:  # noqa: ANN001
    from app.db import repositories as repo
    from app.db.base import new_id, utcnow
    from app.db.models import Dataset, Teacher

    with sessionmaker() as session:
        tenant = repo.get_or_create_tenant(session, f"burst-{new_id('t')}")
        now = utcnow()
        session.add(Teacher(id="tch_burst" + tenant.id[-6:], tenant_id=tenant.id, name="t", uri="teachers/x",
                            architecture="BertForSequenceClassification", model_type="bert", num_labels=2,
                            labels=["negative", "positive"], hidden_size=32, parameters=1, sha256="0" * 64,
                            created_at=now))
        session.add(Dataset(id="ds_burst" + tenant.id[-6:], tenant_id=tenant.id, name="d", uri="datasets/x",
                            format="csv", text_column="text", text_pair_column=None, label_column="label", rows=100,
                            labelled_rows=100, label_counts={"negative": 50, "positive": 50}, columns=["text", "label"],
                            sha256="0" * 64, size_bytes=10, created_at=now))
        session.commit()
        return tenant.id


def _burst(sessionmaker, settings, tenant_id: str, n: int) -> dict[str, int]:  # noqa: ANN001
    from app.errors import TooManyRequests
    from app.schemas.jobs import JobCreate
    from app.services.jobs import create_job

    body = JobCreate.model_validate({"teacher_id": "tch_burst" + tenant_id[-6:],
                                     "train_dataset_id": "ds_burst" + tenant_id[-6:], "method": "kd"})
    start = threading.Barrier(min(n, 32))
    outcomes = {"created": 0, "429": 0, "other": 0}
    lock = threading.Lock()

    def submit(i: int) -> None:
        if i < 32:
            start.wait()
        with sessionmaker() as session:
            try:
                create_job(session, settings, tenant_id, body, None)
                key = "created"
            except TooManyRequests:
                key = "429"
            except Exception:  # noqa: BLE001 - counted: must stay 0
                key = "other"
        with lock:
            outcomes[key] += 1

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(submit, range(n)))
    return outcomes


def _active(sessionmaker, tenant_id: str) -> int:  # noqa: ANN001
    from app.db import repositories as repo

    with sessionmaker() as session:
        return repo.count_active_jobs(session, tenant_id)


def _run(name: str, url: str, tmp_path, figures) -> None:  # noqa: ANN001
    from app.db.session import make_engine, make_sessionmaker
    from app.settings import Settings

    engine = make_engine(url, pool_size=32, max_overflow=8)
    sessionmaker = make_sessionmaker(engine)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, max_concurrent_jobs_per_tenant=LIMIT)
    tenant_id = _seed(sessionmaker)
    started = time.perf_counter()
    first = _burst(sessionmaker, settings, tenant_id, BURST)
    second = _burst(sessionmaker, settings, tenant_id, BURST // 2)
    elapsed = time.perf_counter() - started
    active = _active(sessionmaker, tenant_id)
    engine.dispose()
    figures(f"submitted {BURST}+{BURST // 2} at once, limit {LIMIT} / created {first['created']}+"
            f"{second['created']} / 429 {first['429'] + second['429']} / other errors "
            f"{first['other'] + second['other']} / active jobs {active} / {elapsed:.1f} s")
    assert first == {"created": LIMIT, "429": BURST - LIMIT, "other": 0}
    assert second == {"created": 0, "429": BURST // 2, "other": 0}
    assert active == LIMIT


def test_job_limit_holds_under_a_burst_on_sqlite(tmp_path, figures) -> None:  # noqa: ANN001
    from app.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'lelp.db'}"
    upgrade(url)
    _run("sqlite", url, tmp_path, figures)


def test_job_limit_holds_under_a_burst_on_postgres(pg_url, tmp_path, figures) -> None:  # noqa: ANN001
    _run("postgres", pg_url, tmp_path, figures)
