"""The ``lelp`` client verbs for people and scripts: tables and one-line summaries, ``--json``, exit codes.

The verbs run in-process (typer's CliRunner) against the real API app (FastAPI's TestClient on
the test Postgres), so every table is drawn from real API bodies.
"""

from __future__ import annotations

import json
import tarfile

import pytest
from typer.testing import CliRunner

from app.client.http import ApiError, LelpClient


class InProcessClient(LelpClient):
    """A LelpClient whose HTTP goes to the in-process app; ``close`` leaves the shared TestClient open."""

    def __init__(self, http, headers: dict) -> None:  # noqa: ANN001
        super().__init__("http://testserver", api_key=headers["Authorization"].split(" ", 1)[1])
        self._http.close()
        http.headers.update(headers)
        self._http = http

    def close(self) -> None:
        pass


@pytest.fixture
def lelp(client, auth_a, monkeypatch):  # noqa: ANN001, ANN201
    """``lelp(*args)`` -> click Result, talking to the test app as tenant A."""
    from app.client import commands
    from worker.cli import app

    monkeypatch.setattr(commands, "client", lambda: InProcessClient(client, auth_a))
    runner = CliRunner()

    def run(*args: str):  # noqa: ANN202
        return runner.invoke(app, list(args), env={"COLUMNS": "160"})

    return run


@pytest.fixture
def finished(make_model, job_body, auth_a) -> dict:  # noqa: ANN001
    return make_model(auth_a, job_body)


def test_jobs_list_is_a_table_and_json_has_the_full_objects(lelp, finished):  # noqa: ANN001
    job_id = finished["job_id"]
    table = lelp("jobs", "list")
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:4] == ["ID", "STATUS", "METHOD", "STUDENT"] and "OF TEACHER" in header
    row = next(r for r in rows if r.startswith(job_id))
    assert "succeeded" in row and "90.0%" in row and "95%" in row  # 0.9 / 0.95 of the teacher
    assert "history" not in table.stdout and "{" not in table.stdout

    as_json = lelp("jobs", "list", "--json")
    page = json.loads(as_json.stdout)
    assert job_id in [j["id"] for j in page["data"]] and "progress" in page["data"][0]


def test_show_get_wait_and_submit_print_short_summaries(lelp, finished, job_body):  # noqa: ANN001
    job_id = finished["job_id"]
    shown = lelp("jobs", "show", job_id)
    assert shown.exit_code == 0, shown.output
    assert "result" in shown.stdout and "accuracy 90.0% (teacher 95.0%, 95% of it)" in shown.stdout

    waited = lelp("jobs", "get", job_id, "--wait")
    assert waited.exit_code == 0, waited.output
    summary = waited.stdout.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith(f"{job_id} succeeded") and finished["id"] in summary[0]
    assert json.loads(lelp("jobs", "wait", job_id, "--json").stdout)["model_id"] == finished["id"]

    submitted = lelp("jobs", "submit", "--teacher", job_body["teacher_id"], "--train", job_body["train_dataset_id"],
                     "--epochs", "1")
    assert submitted.exit_code == 0, submitted.output
    line = submitted.stdout.strip()
    assert "\n" not in line and " queued: " in line and "lelp jobs wait job_" in line

    events = lelp("jobs", "events", job_id)
    assert events.exit_code == 0 and "created" in events.stdout and "succeeded" in events.stdout


def test_predict_shows_every_class_probability_and_download_names_its_format(lelp, finished, tmp_path):  # noqa: ANN001
    model_id = finished["id"]
    predicted = lelp("models", "predict", model_id, "a good film", "a bad film")
    assert predicted.exit_code == 0, predicted.output
    header = predicted.stdout.splitlines()[0]
    assert "P(negative)" in header and "P(positive)" in header
    rows = predicted.stdout.strip().splitlines()[1:]
    assert len(rows) == 2
    for row in rows:  # label then the probabilities, which sum to 1
        probs = [float(x) for x in row.split()[2:]]
        assert abs(sum(probs) - 1) < 0.01 and row.split()[1] in ("negative", "positive")
    body = json.loads(lelp("models", "predict", model_id, "x", "--json").stdout)
    assert set(body["predictions"][0]["probabilities"]) == {"negative", "positive"}

    downloaded = lelp("models", "download", model_id, str(tmp_path), "--format", "artifact")
    assert downloaded.exit_code == 0, downloaded.output
    path = downloaded.stdout.strip()
    assert path.endswith(f"{model_id}.tar.gz") and tarfile.is_tarfile(path)

    bad = lelp("models", "download", model_id, str(tmp_path), "--format", "pickle")
    assert bad.exit_code == 2 and "artifact, onnx or onnx-int8" in bad.stderr


def test_user_mistakes_exit_2_with_one_line(lelp, tmp_path):  # noqa: ANN001
    cases = {
        "unknown job (404)": ("jobs", "show", "job_doesnotexist"),
        "bad submit (4xx)": ("jobs", "submit", "--teacher", "tch_nope", "--train", "ds_nope"),
        "missing file": ("datasets", "upload", str(tmp_path / "missing.csv")),
        "missing directory": ("teachers", "upload", str(tmp_path / "nothing-here")),
        "bad option value": ("jobs", "submit", "--teacher", "t", "--train", "d", "--subclasses", "many"),
    }
    for what, args in cases.items():
        result = lelp(*args)
        assert result.exit_code == 2, (what, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, what
    usage = lelp("jobs", "submit")  # click: a missing required option is a usage error, exit 2 too
    assert usage.exit_code == 2 and "--teacher" in usage.stderr


def test_an_unreachable_server_exits_1_not_2():
    from worker.cli import app

    result = CliRunner().invoke(app, ["jobs", "list"], env={"LELP_API_URL": "http://127.0.0.1:9",
                                                             "LELP_API_KEY": "lelp_x"})
    assert result.exit_code == 1 and "LELP_API_URL" in result.stderr


def test_python_client_reports_downloads_and_int8_arguments(finished, client, auth_a, tmp_path):  # noqa: ANN001
    c = InProcessClient(client, auth_a)
    out = tmp_path / "downloads"
    out.mkdir()
    with pytest.raises(ApiError) as refused:
        c.download(finished["id"], out, "pickle")
    assert refused.value.code == "invalid_option" and not list(out.iterdir())
    assert tarfile.is_tarfile(c.download_artifact(finished["id"], out))
    with pytest.raises(ApiError) as no_report:  # the tiny model has no report.html: the API's 404, not a crash
        c.model_report(finished["id"])
    assert no_report.value.status == 404
    sent = []
    client.event_hooks["request"].append(lambda request: sent.append(json.loads(request.content or b"{}")))
    try:
        c.predict_int8(finished["id"], ["x"])
    except ApiError as exc:  # the server may lack the [onnx] extra: the request is what this checks
        assert exc.status in (422, 503)
    assert sent[-1] == {"inputs": ["x"], "quantize": "int8"}


def test_jobs_report_saves_the_live_page_of_a_queued_job(lelp, job_body, client, auth_a, tmp_path):  # noqa: ANN001
    job = client.post("/v1/jobs", headers=auth_a, json=job_body).json()
    saved = lelp("jobs", "report", job["id"], str(tmp_path))
    assert saved.exit_code == 0, saved.output
    page = tmp_path / f"{job['id']}-report.html"
    assert saved.stdout.strip() == str(page) and "<html" in page.read_text().lower()


def test_submit_passes_name_augment_min_speedup_and_webhook(lelp, job_body):  # noqa: ANN001
    base = ["jobs", "submit", "--teacher", job_body["teacher_id"], "--train", job_body["train_dataset_id"]]
    named = lelp(*base, "--name", "first try", "--augment", "auto", "--student", "auto", "--min-speedup", "50",
                 "--json")
    assert named.exit_code == 0, named.output
    job = json.loads(named.stdout)
    assert job["name"] == "first try" and job["hyperparameters"]["augment"] == "auto"
    assert job["student"]["kind"] == "auto" and job["student"]["min_speedup"] == 50.0
    counted = json.loads(lelp(*base, "--augment", "2", "--json").stdout)
    assert counted["hyperparameters"]["augment"] == 2
    bad = lelp(*base, "--augment", "many")
    assert bad.exit_code == 2 and "--augment" in bad.output
    refused = lelp(*base, "--webhook-url", "https://not-allowed.example/hook")  # no host is allowed here
    assert refused.exit_code == 2 and "webhook" in refused.output
