"""The ``lelp`` progress bar: plain-word stages, one fraction for the whole job, a steady ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.client.stages import SteadyEta, candidate_words, describe


def test_candidate_and_stage_names_read_as_plain_words():
    assert candidate_words("kd-t1") == "plain KD"
    assert candidate_words("lelp-S2-b1-t1") == "LELP, 2 sub-classes per class"
    assert candidate_words("random_subclass-S4-b1.5-t2") == "random sub-classes, 4 sub-classes per class"
    assert candidate_words("something-new") == "something-new"
    training = {"stage": "train", "epoch": 3, "candidate": 2, "candidates": 3, "candidate_name": "lelp-S2-b1-t1"}
    assert describe(training, "running") == "training student 2/3 (LELP, 2 sub-classes per class), epoch 3"
    assert describe({"stage": "fit_projector", "message": "kd-t1", "candidate": 1, "candidates": 3}, "running") \
        == "training student 1/3 (plain KD): building its targets"
    assert describe({"stage": "extract"}, "running") == "scoring the data with the teacher"
    assert describe({"stage": "extract", "message": "static table: 0/78 vocabulary tokens through the encoder"},
                    "running") == "building the student's token table from the teacher's encoder"
    assert describe({"stage": "queued"}, "queued") == "waiting for a worker"
    assert describe({"stage": "train"}, "succeeded") == "succeeded"
    assert "kd-t1" not in describe({"stage": "evaluate", "message": "evaluating kd-t1"}, "running")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_counts_down_between_polls_and_rises_only_halfway():
    clock = FakeClock()
    eta = SteadyEta(clock)
    assert eta.left() is None
    eta.update(None)
    assert eta.left() is None, "no estimate is not 0 s"
    eta.update(100.0)
    clock.now = 10.0
    assert eta.left() == 90.0  # the clock runs between polls
    eta.update(60.0)  # good news: believed at once
    assert eta.left() == 60.0
    clock.now = 20.0
    eta.update(250.0)  # a jump up: moves halfway from the running 50 s
    assert eta.left() == 150.0
    clock.now = 1000.0
    assert eta.left() == 0.0
    eta.finish()
    assert eta.left() == 0.0


def job(status: str, **progress) -> dict:  # noqa: ANN003
    started = (datetime.now(UTC) - timedelta(seconds=125)).isoformat()
    return {"id": "job_x", "status": status, "progress": progress, "started_at": started, "finished_at": None}


def test_one_bar_for_the_whole_job_never_goes_back():
    from app.client.commands import JobProgressBar

    bar = JobProgressBar("job_x")
    bar.update(job("queued", stage="queued"))
    assert bar.completed == 0 and bar.description == "waiting for a worker"
    bar.update(job("running", stage="train", fraction=0.9, overall_fraction=0.5, overall_eta_s=120.0,
                   candidate=2, candidates=3, candidate_name="lelp-S2-b1-t1", epoch=2))
    assert bar.completed == 50.0 and bar.description.startswith("training student 2/3 (LELP")
    assert 110 < bar.eta.left() <= 120
    bar.update(job("running", stage="fit_projector", fraction=None, overall_fraction=0.45))  # a stale poll
    assert bar.completed == 50.0, "the bar does not go back"
    bar.update(job("succeeded", stage="save"))
    assert bar.completed == 100.0 and bar.eta.left() == 0.0
    task = bar._bar.tasks[0]
    import time

    assert 120 <= time.monotonic() - task.fields["origin"] < 200, "the clock shows the job's time, not 0"


def test_summaries_are_one_line():
    from app.client import render

    done = {"id": "job_x", "status": "succeeded", "model_id": "mdl_x", "started_at": "2026-12-07T07:00:00+00:00",
            "finished_at": "2026-12-07T07:02:05+00:00",
            "metrics": {"student": {"accuracy": 0.79, "sentences_per_second": 9700.0, "size_bytes": 12_000_000},
                        "teacher": {"accuracy": 0.836, "sentences_per_second": 100.0}, "agreement": 0.88}}
    line = render.job_summary(done)
    assert line == ("job_x succeeded in 2m05s: model mdl_x; accuracy 79.0% (teacher 83.6%, 94% of it), "
                    "agreement with the teacher 88.0%, 97.0x the teacher's speed, 12.0 MB")
    failed = {"id": "job_y", "status": "failed", "error": {"code": "invalid_data", "message": "no rows"}}
    assert render.job_summary(failed) == "job_y failed: invalid_data: no rows"
    assert render.duration(None) == "" and render.duration(3725) == "1h02m"


def test_tables_fit_the_terminal_by_cutting_names_not_ids():
    from app.client.render import MIN_SQUEEZED, fit_widths

    titles = ["ID", "STATUS", "TEACHER", "TRAIN", "CREATED"]
    cells = [["job_" + "a" * 32, "succeeded", "tch_" + "b" * 32, "ds_" + "c" * 32, "2026-12-07 07:53"]]
    assert fit_widths(titles, cells, 500) == [36, 9, 36, 35, 16]
    narrow = fit_widths(titles, cells, 100)
    assert narrow[:2] == [36, 9] and sum(w for w in narrow if w) + 2 * (sum(1 for w in narrow if w) - 1) <= 100
    assert all(w == 0 or w >= MIN_SQUEEZED for w in narrow)
    tiny = fit_widths(titles, cells, 50)
    assert tiny == [36, 9, 0, 0, 0], "squeezable columns go before ids are cut"


def test_waiting_outlives_a_server_blip_but_not_a_4xx():
    import httpx
    import pytest

    from app.client.http import ApiError, LelpClient

    answers = iter([httpx.Response(503, json={"error": {"code": "database_unavailable", "message": "restarting"}}),
                    httpx.ConnectError("refused"),
                    httpx.Response(200, json={"id": "job_x", "status": "running", "progress": {}}),
                    httpx.Response(200, json={"id": "job_x", "status": "succeeded", "progress": {}})])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = LelpClient("http://api", "lelp_k")
    client._http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(handler))
    seen = []
    assert client.wait_job("job_x", on_progress=seen.append, poll=0)["status"] == "succeeded"
    assert [j["status"] for j in seen] == ["running", "succeeded"]

    client._http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(
        lambda r: httpx.Response(404, json={"error": {"code": "job_not_found", "message": "no job"}})))
    with pytest.raises(ApiError) as gone:
        client.wait_job("job_x", poll=0)
    assert gone.value.status == 404
    client._http = httpx.Client(base_url="http://api", transport=httpx.MockTransport(
        lambda r: httpx.Response(503, json={"error": {"code": "database_unavailable", "message": "down"}})))
    with pytest.raises(ApiError) as down:
        client.wait_job("job_x", poll=0.01, outage_s=0.05)
    assert down.value.status == 503


def test_ctrl_c_while_waiting_says_the_job_goes_on(monkeypatch, capsys):
    import pytest
    import typer

    from app.client import commands
    from app.client.http import LelpClient

    def interrupted(self, job_id, on_progress=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(LelpClient, "wait_job", interrupted)
    with LelpClient("http://api", "lelp_k") as c, pytest.raises(typer.Exit) as stopped:
        commands.follow(c, "job_x")
    assert stopped.value.exit_code == 130
    err = capsys.readouterr().err
    assert "job_x goes on" in err and "lelp jobs cancel job_x" in err
