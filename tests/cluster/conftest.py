"""The cluster fixture (one per module: starting seven hosts costs ~30 s) and the figures it reports.

Each scenario records a line with ``figures``; the terminal summary prints them under
"cluster figures", with the totals the issue asks for (jobs, kills, cuts, restarts, lost,
duplicated, the longest a queued job went without a message). docs/RELIABILITY.md quotes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.cluster.cluster import Cluster

FIGURES: dict[str, str] = {}
TOTALS: dict[str, object] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def figures(request) -> Callable[[str], None]:
    def record(text: str) -> None:
        FIGURES[request.node.name] = text

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES or TOTALS:
        terminalreporter.section("cluster figures")
        for name, text in FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")
        if TOTALS:
            terminalreporter.write_line("totals: " + " / ".join(f"{k} {v}" for k, v in TOTALS.items()))
