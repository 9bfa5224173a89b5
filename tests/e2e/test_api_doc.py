"""docs/API.md's curl session, run as written against a live ``lelp serve``.

The commands are read from the doc's "The whole flow with curl" block and run by bash in a
directory laid out like the repository after the README's commands: ``demo/data/*.csv`` (the
shipped data) and ``.lelp-demo/teacher`` (where ``scripts/demo.sh`` writes its fine-tuned
MiniLM; the tiny random teacher stands in for it here, so the test takes a minute, not ten).
``curl`` runs with ``--fail-with-body``: any 4xx or 5xx stops the session and fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.service_fixtures import REPO_ROOT

pytestmark = [pytest.mark.service, pytest.mark.timeout(900), pytest.mark.slow]
PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'


def session_commands() -> str:
    text = (REPO_ROOT / "docs" / "API.md").read_text()
    section = text.split("## The whole flow with curl", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "docs/API.md has no bash block under 'The whole flow with curl'"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq")
def test_the_documented_curl_session_runs(tmp_path, tiny_teacher_dir, monkeypatch):
    from demo.run import free_port, start_server, stop_server, wait_ready

    repo = tmp_path / "checkout"
    (repo / "demo").mkdir(parents=True)
    (repo / "demo" / "data").symlink_to(REPO_ROOT / "demo" / "data")
    shutil.copytree(tiny_teacher_dir, repo / ".lelp-demo" / "teacher")
    data_dir = tmp_path / "lelp-data"
    monkeypatch.setenv("LELP_ALLOWED_URI_ROOTS", json.dumps([str(repo / ".lelp-demo")]))
    for name in ("LELP_DATABASE_URL", "LELP_BROKER_URL", "LELP_ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server = start_server(data_dir, port, data_dir / "logs" / "serve.log")
    try:
        wait_ready(api, server)
        env = dict(os.environ, API=api, LELP_API_KEY=(data_dir / "api_key").read_text().strip())
        result = subprocess.run(["bash", "-c", PRELUDE + session_commands()], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=800, check=False)
        logs = "\n".join(p.read_text()[-3000:] for p in (data_dir / "logs").glob("*.log"))
        assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}\n{logs}"
    finally:
        stop_server(server)
    # `lelp serve` told the user where the console is and how to point the CLI at it
    banner = (data_dir / "logs" / "serve.log").read_text()
    key = (data_dir / "api_key").read_text().strip()
    assert f"Console: {api}/ui" in banner and f"export LELP_API_URL={api}\n" in banner
    assert f"export LELP_API_KEY={key}\n" in banner
    out = result.stdout
    assert '"status":"succeeded"' in out.replace(" ", "") and '"predictions"' in out
    assert out.count("204") >= 3 and "lelp_student.json" in out
    model = json.loads((repo / "job.json").read_text())
    assert model["status"] == "succeeded" and model["model_id"].startswith("mdl_")
