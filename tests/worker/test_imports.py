"""Import boundaries: what the API and the CLI import must not load torch or the pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["worker.celery_app", "worker.cli", "app.queue", "app.admin_commands",
                                    "app.client.http", "worker.embedded"])
def test_light_modules_do_not_import_torch(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'transformers', 'lelp.pipeline') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_enqueue_routes_gpu_jobs_to_the_gpu_queue(monkeypatch):
    from app import queue as module  # the queue contract lives on the app floor (issue 8)

    sent = []
    monkeypatch.setattr(module.celery_app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    module.enqueue_job("job_1", "gpu")
    module.enqueue_job("job_2", "auto")
    module.enqueue_job("job_3", "cpu")
    assert sent == [("lelp.run_job", ["job_1"], "gpu"), ("lelp.run_job", ["job_2"], "cpu"),
                    ("lelp.run_job", ["job_3"], "cpu")]


def test_celery_config_is_reliable_by_construction():
    from app.queue import celery_config
    from app.settings import Settings

    redis = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0", job_time_limit_s=7200))
    assert redis["task_acks_late"] and redis["task_reject_on_worker_lost"]
    assert redis["worker_prefetch_multiplier"] == 1 and redis["accept_content"] == ["json"]
    assert redis["task_soft_time_limit"] < redis["task_time_limit"] == 7200
    assert redis["broker_transport_options"]["visibility_timeout"] > 7200, "Redis must not redeliver a live job"
    sqlite = celery_config(Settings(broker_url="sqla+sqlite:////tmp/b.sqlite"))
    assert sqlite["broker_transport_options"] == {}, "the SQLAlchemy transport passes options to create_engine"
