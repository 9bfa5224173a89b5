"""Issue 18: ``max_length`` past the teacher's position embeddings is a 422 at submit; on main
``max_length: 4096`` on a teacher with 128 positions was accepted and failed the job
with internal_error."""

from __future__ import annotations


def test_max_length_is_judged_against_the_teachers_positions(client, auth_a, job_body, enqueued) -> None:  # noqa: ANN001
    too_long = {**job_body, "hyperparameters": {**job_body["hyperparameters"], "max_length": 4096}}
    r = client.post("/v1/jobs", headers=auth_a, json=too_long)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("max_length_too_long", "hyperparameters.max_length")
    assert "128" in error["message"]
    assert enqueued == []
    fits = {**job_body, "hyperparameters": {**job_body["hyperparameters"], "max_length": 128}}
    assert client.post("/v1/jobs", headers=auth_a, json=fits).status_code == 202
