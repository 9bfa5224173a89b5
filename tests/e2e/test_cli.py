"""The ``lelp`` client verbs against the real API: JSON out (``--json``), one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service_fixtures import REPO_ROOT

pytestmark = [pytest.mark.service, pytest.mark.slow]


def lelp(*args: str, url: str, key: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LELP_API_URL=url, LELP_API_KEY=key, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=env,
                          check=False,
                          timeout=120)


def test_cli_uploads_and_reports_errors_in_one_line(api_server, service_api_key, tiny_teacher_dir, tmp_path):
    uploaded = lelp("teachers", "upload", str(tiny_teacher_dir), "--name", "cli", "--json", url=api_server,
                    key=service_api_key)
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["name"] == "cli"

    missing = lelp("jobs", "status", "job_doesnotexist", url=api_server, key=service_api_key)
    assert missing.returncode == 2  # a 404: the user's mistake
    assert missing.stderr.strip().startswith("error: ") and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    bad_key = lelp("jobs", "list", url=api_server, key="lelp_wrong")
    assert bad_key.returncode == 2 and "error: " in bad_key.stderr and "Traceback" not in bad_key.stderr


def run_local(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LELP_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO_ROOT))
    for name in ("LELP_DATABASE_URL", "LELP_BROKER_URL", "LELP_ARTIFACT_URL"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_db_and_admin_commands_on_sqlite(tmp_path):
    import sqlalchemy as sa

    assert run_local("db", "upgrade", data_dir=tmp_path).returncode == 0
    created = run_local("admin", "create-key", "--tenant", "acme", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith("lelp_"), "stdout holds only the key"

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'lelp.db'}")
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT key_hash FROM api_keys")).scalars().all()
    assert len(stored) == 1 and key not in stored[0], "the key is stored hashed"

    assert run_local("db", "downgrade", "base", data_dir=tmp_path).returncode == 0
    with engine.connect() as connection:
        assert "api_keys" not in sa.inspect(connection).get_table_names()
    engine.dispose()
