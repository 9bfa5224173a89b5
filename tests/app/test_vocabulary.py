"""One vocabulary: the API schema, both CLIs and the client list what the library and the ORM know."""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

from app.client import FINISHED, LelpClient
from app.db.models import ACTIVE_STATUSES, FINISHED_STATUSES, JOB_STATUSES
from app.schemas.jobs import JobCreate, JobRead
from app.vocabulary import JobStatus
from lelp.methods import DEFAULT_METHOD, METHOD_CHOICES, Method
from lelp.students.registry import DEFAULT_STUDENT_KIND, STUDENT_KINDS


def test_the_api_schema_lists_the_library_methods_and_student_kinds() -> None:
    schema = JobCreate.model_json_schema()
    assert set(schema["properties"]["method"]["enum"]) == {"auto", *(m.value for m in Method)}
    assert schema["properties"]["method"]["default"] == DEFAULT_METHOD == "auto"
    student = schema["$defs"]["StudentSpec"]["properties"]["architecture"]
    assert student["enum"] == list(STUDENT_KINDS) and student["default"] == DEFAULT_STUDENT_KIND
    status = JobRead.model_json_schema()["$defs"]["JobStatus"]["enum"]
    assert status == [s.value for s in JobStatus] == list(JOB_STATUSES)
    assert set(ACTIVE_STATUSES) | set(FINISHED_STATUSES) == set(JobStatus) and FINISHED == FINISHED_STATUSES


def test_one_default_method_and_student_everywhere() -> None:
    from lelp.pipeline import DEFAULT_STUDENT, DistillConfig

    create = inspect.signature(LelpClient.create_job).parameters
    assert create["method"].default == DEFAULT_METHOD == DistillConfig.__dataclass_fields__["method"].default
    assert create["student"].default == DEFAULT_STUDENT_KIND == DEFAULT_STUDENT
    assert JobCreate.model_fields["method"].default == DEFAULT_METHOD


def test_cli_help_lists_every_method_kind_and_status() -> None:
    from app.cli import app as cli

    runner = CliRunner()
    submit = " ".join(runner.invoke(cli, ["jobs", "submit", "--help"], env={"COLUMNS": "400"}).output.split())
    for name in (*METHOD_CHOICES, *STUDENT_KINDS):
        assert name in submit, name
    listing = " ".join(runner.invoke(cli, ["jobs", "list", "--help"], env={"COLUMNS": "400"}).output.split())
    assert all(s.value in listing for s in JobStatus)
    distill = "".join(runner.invoke(cli, ["distill", "--help"]).output.split())  # click wraps inside words
    assert "|".join(STUDENT_KINDS) in distill and "|".join(METHOD_CHOICES) in distill
