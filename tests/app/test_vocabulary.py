"""One vocabulary: the API schema, both CLIs and the client list what the library and the ORM know."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from app.client.http import FINISHED, LelpClient
from app.db.models import ACTIVE_STATUSES, FINISHED_STATUSES, JOB_STATUSES
from app.schemas.jobs import JobCreate, JobRead
from app.vocabulary import JobStatus
from lelp.errors import ConfigError
from lelp.method.registry import DEFAULT_METHOD, METHOD_CHOICES, Method
from lelp.students.registry import DEFAULT_STUDENT_KIND, STUDENT_CHOICES, STUDENT_KINDS


def test_the_api_schema_lists_the_library_methods_and_student_kinds() -> None:
    schema = JobCreate.model_json_schema()
    assert set(schema["properties"]["method"]["enum"]) == {"auto", *(m.value for m in Method)}
    assert schema["properties"]["method"]["default"] == DEFAULT_METHOD == "auto"
    student = schema["$defs"]["StudentSpec"]["properties"]["kind"]
    assert student["enum"] == list(STUDENT_CHOICES) == [*STUDENT_KINDS, "auto"]
    assert student["default"] == DEFAULT_STUDENT_KIND
    status = JobRead.model_json_schema()["$defs"]["JobStatus"]["enum"]
    assert status == [s.value for s in JobStatus] == list(JOB_STATUSES)
    assert set(ACTIVE_STATUSES) | set(FINISHED_STATUSES) == set(JobStatus) and FINISHED == FINISHED_STATUSES


def test_one_default_method_and_student_everywhere() -> None:
    from lelp.pipeline import DEFAULT_STUDENT, DistillConfig

    create = inspect.signature(LelpClient.create_job).parameters
    assert create["method"].default == DEFAULT_METHOD == DistillConfig.__dataclass_fields__["method"].default
    assert create["student"].default == DEFAULT_STUDENT_KIND == DEFAULT_STUDENT
    assert JobCreate.model_fields["method"].default == DEFAULT_METHOD


def test_every_api_hyperparameter_is_a_library_config_field() -> None:
    """The worker hands ``hyperparameters`` to ``DistillConfig`` by name (``worker.job_inputs``)."""
    import dataclasses

    from app.schemas.jobs import Hyperparameters
    from lelp.config import DistillConfig

    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    assert set(Hyperparameters.model_fields) <= fields


def test_cli_help_lists_every_method_kind_and_status() -> None:
    from app.admin_commands import app as cli

    runner = CliRunner()
    submit = " ".join(runner.invoke(cli, ["jobs", "submit", "--help"], env={"COLUMNS": "400"}).output.split())
    for name in (*METHOD_CHOICES, *STUDENT_KINDS):
        assert name in submit, name
    listing = " ".join(runner.invoke(cli, ["jobs", "list", "--help"], env={"COLUMNS": "400"}).output.split())
    assert all(s.value in listing for s in JobStatus)
    distill = "".join(runner.invoke(cli, ["distill", "--help"]).output.split())  # click wraps inside words
    assert "|".join(STUDENT_KINDS) in distill and "|".join(METHOD_CHOICES) in distill


def test_every_per_kind_fact_comes_from_the_registry_table(monkeypatch) -> None:
    """A new student kind is its module plus one ``KINDS`` entry: nothing else keeps a kind list."""
    import dataclasses

    from app import queue
    from app.services import job_checks
    from lelp import config
    from lelp.export import runtime
    from lelp.students import registry

    assert set(config.STUDENT_DEFAULTS) == set(runtime.ONNX_KINDS) == set(registry.STUDENT_KINDS)
    assert job_checks.KINDS is registry.KINDS
    for kind, info in registry.KINDS.items():
        assert config.STUDENT_DEFAULTS[kind] is info.defaults
        assert queue.gains_from_gpu(kind) == info.gains_from_gpu
        assert (kind in config.MULTI_GPU_STUDENTS) == info.multi_gpu
    # the library's checks read the table at call time: a kind whose base turns "required" is refused without one
    kinds = {**registry.KINDS, "ngram": dataclasses.replace(registry.KINDS["ngram"], base="required")}
    monkeypatch.setattr(config, "KINDS", kinds)
    with pytest.raises(ConfigError, match="student"):
        config.validate_config(config.DistillConfig(teacher_dir="t", train_path="d", student="ngram"))
