"""The ``lelp`` CLI covers the API: every verb against the real API process, keys included.

Output here is read with ``--json`` (the scripts' form); tests/app/test_cli_output.py checks the tables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.service_fixtures import REPO_ROOT
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.slow]


def lelp(*args: str, url: str, key: str | None, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, LELP_API_URL=url, PYTHONPATH=str(REPO_ROOT), COLUMNS="100", **env)
    environ.pop("LELP_API_KEY", None)
    if key is not None:
        environ["LELP_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, env=environ,
                          check=False, timeout=120)


def ok(result: subprocess.CompletedProcess) -> dict | list | str:
    assert result.returncode == 0, result.stderr
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.stdout


def test_every_resource_has_list_show_delete_and_jobs_take_every_field(api_server, service_api_key,
                                                                         tiny_teacher_dir, tiny_encoder_dir, tmp_path):
    def run(*args: str):  # noqa: ANN202
        return ok(lelp(*args, "--json", url=api_server, key=service_api_key))

    teacher = run("teachers", "upload", str(tiny_teacher_dir), "--name", "cli-teacher")
    base = run("base-models", "upload", str(tiny_encoder_dir))
    train_csv = write_csv(tmp_path / "train.csv", make_text_rows(80, seed=1))
    train = run("datasets", "upload", str(train_csv))
    for noun, row in (("teachers", teacher), ("base-models", base), ("datasets", train)):
        assert row["id"] in [r["id"] for r in run(noun, "list", "--limit", "100")["data"]]
        assert run(noun, "show", row["id"])["id"] == row["id"]

    job = run("jobs", "submit", "--teacher", teacher["id"], "--train", train["id"], "--student", "encoder_mlp",
              "--student-base", base["id"], "--max-length", "32", "--learning-rate", "0.002", "--batch-size", "16",
              "--epochs", "1", "--subclasses", "2", "--beta", "1.5", "--tau", "2", "--alpha", "0.1", "--seed", "3",
              "--device", "cpu")
    assert job["method"] == "auto"  # the API's and `lelp distill`'s default
    assert job["student"] == {"kind": "encoder_mlp", "base": base["id"]}
    assert job["hyperparameters"] == {"max_length": 32, "learning_rate": 0.002, "batch_size": 16, "epochs": 1,
                                      "subclasses": 2, "beta": 1.5, "tau": 2.0, "alpha": 0.1, "seed": 3}
    assert run("jobs", "show", job["id"])["id"] == job["id"]
    assert job["id"] in [j["id"] for j in run("jobs", "list", "--limit", "100")["data"]]
    cancel = lelp("jobs", "cancel", job["id"], "--json", url=api_server, key=service_api_key)
    if cancel.returncode == 0:
        assert json.loads(cancel.stdout)["status"] in ("cancelled", "running", "queued")
    else:  # a one-epoch job on a tiny model can end first: cancel then refuses it (409, exit 2)
        assert cancel.returncode == 2 and "job_finished" in cancel.stderr, cancel.stderr
    assert "data" in run("models", "list")

    refused = lelp("jobs", "submit", "--teacher", teacher["id"], "--train", train["id"], "--student", "encoder_mlp",
                   url=api_server, key=service_api_key)
    assert refused.returncode == 2 and refused.stderr.startswith("error: base_required: ")
    assert "student.base" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    in_use = lelp("base-models", "delete", base["id"], url=api_server, key=service_api_key)
    if in_use.returncode == 2:  # the cancelled job may still be running for a moment
        assert "base_model_in_use" in in_use.stderr
    for noun, row in (("datasets", train), ("teachers", teacher)):
        gone = lelp(noun, "delete", row["id"], url=api_server, key=service_api_key)
        assert gone.returncode == 0 or "in_use" in gone.stderr, gone.stderr


def test_revoked_key_gets_401_and_errors_name_the_variable_to_set(api_server, pg_url):
    from app.db.session import session_scope
    from app.security import create_api_key

    with session_scope(pg_url) as session:
        key = create_api_key(session, "cli-keys")
    listed = ok(lelp("admin", "list-keys", "--tenant", "cli-keys", url=api_server, key=None,
                     LELP_DATABASE_URL=pg_url))
    assert [k["prefix"] for k in listed] == [key[:12]] and listed[0]["revoked_at"] is None
    assert key not in json.dumps(listed)
    revoked = lelp("admin", "revoke-key", listed[0]["id"], url=api_server, key=None, LELP_DATABASE_URL=pg_url)
    assert revoked.returncode == 0 and listed[0]["id"] in revoked.stdout, revoked.stderr
    again = ok(lelp("admin", "list-keys", "--tenant", "cli-keys", url=api_server, key=None, LELP_DATABASE_URL=pg_url))
    assert again[0]["revoked_at"] is not None

    import httpx

    r = httpx.get(f"{api_server}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with_revoked = lelp("jobs", "list", url=api_server, key=key)
    assert with_revoked.returncode == 2 and "LELP_API_KEY" in with_revoked.stderr  # a 4xx: the user's to fix
    no_key = lelp("jobs", "list", url=api_server, key=None)
    assert no_key.returncode == 2 and "missing_api_key" in no_key.stderr and "LELP_API_KEY" in no_key.stderr
    unreachable = lelp("jobs", "list", url="http://127.0.0.1:9", key="lelp_x")
    assert unreachable.returncode == 1 and "LELP_API_URL" in unreachable.stderr  # the network's: exit 1
    unknown = lelp("admin", "revoke-key", "key_nope", url=api_server, key=None, LELP_DATABASE_URL=pg_url)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: key_not_found")


@pytest.mark.parametrize("command", [("jobs", "submit"), ("distill",), ("teachers", "upload"), ("datasets", "upload"),
                                     ("models", "predict"), ("models", "cascade"), ("models", "redistil"),
                                     ("admin", "revoke-key"), ("serve",)])
def test_help_is_plain(command):
    result = lelp(*command, "--help", url="http://127.0.0.1:9", key=None)
    assert result.returncode == 0, result.stderr
    assert not re.search(r"<(str|bool|int|float|path)>", result.stdout), result.stdout
    assert "[default: default]" not in result.stdout


def test_help_defaults_are_the_librarys():
    from app.client.commands import PER_STUDENT_DEFAULTS
    from lelp.pipeline import DEFAULT_BETA, DEFAULT_SUBCLASSES, STUDENT_DEFAULTS

    for name, per_kind in PER_STUDENT_DEFAULTS.items():
        assert per_kind == {kind: defaults[name] for kind, defaults in STUDENT_DEFAULTS.items()}
    text = lelp("jobs", "submit", "--help", url="http://127.0.0.1:9", key=None).stdout
    assert f"[default: ({DEFAULT_SUBCLASSES})]" in text and f"[default: ({DEFAULT_BETA:g})]" in text
