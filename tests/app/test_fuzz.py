"""Bounded fuzzing of our own OpenAPI document: no input may produce a server error."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("LELP_FUZZ_EXAMPLES", "8"))  # per operation: small by default (2 shared cores)


@pytest.mark.slow
def test_no_server_errors(make_client, key_a, job_body) -> None:  # noqa: ANN001
    """Every operation, with a valid key and real rows present, answers < 500 to generated input."""
    client = make_client()
    headers = {"Authorization": f"Bearer {key_a}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    tried: dict[str, int] = {}

    for result in schema.get_all_operations():
        _fuzz(result.ok(), headers, tried, failures)
    assert len(tried) >= 15, tried
    assert failures == []


def _fuzz(operation, headers: dict, tried: dict[str, int], failures: list[str]) -> None:  # noqa: ANN001
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case) -> None:  # noqa: ANN001
        tried[operation.label] = tried.get(operation.label, 0) + 1
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

    run()
