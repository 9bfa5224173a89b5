"""The quick tier, ``pytest -m "not slow"``, still reaches every package of the code.

A test module whose ``pytestmark`` holds ``pytest.mark.slow`` is out of the quick tier; the rest
(single slow tests inside them aside) must reach, between them, every package of ``lelp``,
``app`` and ``worker`` through their imports (``app.main`` reaching the routers counts), so a
developer's inner loop exercises all of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_layers import all_imports, import_graph, module_name

ROOT = Path(__file__).resolve().parents[1]


def module_is_slow(source: str) -> bool:
    """True when the module's ``pytestmark`` names ``slow``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            return any(isinstance(n, ast.Attribute) and n.attr == "slow" for n in ast.walk(node.value))
    return False


def packages() -> set[str]:
    """Every package of ours: lelp, app, worker and their sub-packages (the migrations aside)."""
    found = {module_name(init.parent / "__init__.py") for top in ("lelp", "app", "worker")
             for init in (ROOT / top).rglob("__init__.py")}
    return {p for p in found if ".migrations" not in p}


def test_the_slow_mark_is_read_from_pytestmark() -> None:
    assert module_is_slow("import pytest\npytestmark = [pytest.mark.service, pytest.mark.slow]\n")
    assert module_is_slow("pytestmark = pytest.mark.slow\n")
    assert not module_is_slow("import pytest\npytestmark = pytest.mark.service\n@pytest.mark.slow\ndef test(): ...\n")


def test_the_quick_tier_imports_every_package() -> None:
    quick = [f for f in (ROOT / "tests").rglob("test_*.py") if not module_is_slow(f.read_text())]
    graph = import_graph(("lelp", "app", "worker"))
    reached, pending = set(), [target for f in quick for _, target in all_imports(f)]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += graph.get(name, ())
    missing = sorted(p for p in packages() if not any(t == p or t.startswith(p + ".") for t in reached))
    assert missing == []
