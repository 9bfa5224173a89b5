"""The three floors, read from the source: ``lelp`` at the bottom, ``app`` above it, ``worker`` on top.

Static analysis with ``ast`` (nothing is imported): an arrow that runs back up, or an import
cycle, fails here before it fails at import time in some process. Cycles are counted with
function-local imports too: a lazy import that closes a loop is still two modules that each
need the other, and it breaks as soon as someone moves the import to the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(file: Path) -> str:
    parts = list(file.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run when the module is imported (not inside functions or classes' methods)."""
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node):
                yield from _module_level(node.body)
                yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        else:
            yield node


def imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement loads (relative imports resolved; ``from m import x`` gives m and m.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def all_imports(file: Path) -> list[tuple[int, str]]:
    """Every import in ``file``, at any depth (a lazy import inside a function counts too)."""
    name, tree = module_name(file), ast.parse(file.read_text())
    return [(node.lineno, target) for node in ast.walk(tree)
            for target in imported(node, name, file.name == "__init__.py")]


def _every_runtime_node(node: ast.AST) -> Iterator[ast.AST]:
    """Every node at any depth, except inside ``if TYPE_CHECKING:`` (type hints import nothing at run time)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _every_runtime_node(other)
                yield other
            continue
        yield child
        yield from _every_runtime_node(child)


def _targets(node: ast.AST, module: str, is_package: bool, modules: set) -> list[str]:
    """The modules an import needs: ``from pkg import sub`` needs ``pkg.sub``, not ``pkg``'s namespace
    (Python finds a submodule of a package that is still initialising)."""
    names = imported(node, module, is_package)
    if isinstance(node, ast.ImportFrom) and names[1:] and all(n in modules for n in names[1:]):
        return names[1:]
    return names


def import_graph(packages: tuple[str, ...], *, lazy: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports; ``lazy=False``: only imports that run at import time."""
    files = {module_name(f): f for package in packages for f in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, file in files.items():
        tree = ast.parse(file.read_text())
        nodes = _every_runtime_node(tree) if lazy else _module_level(tree.body)
        targets = {t for node in nodes for t in _targets(node, name, file.name == "__init__.py", set(files))}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def module_level_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    return import_graph(packages, lazy=False)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# i8b removes this: the recovery sweep moves to app/services/recovery.py.
ALLOWED_WORKER_IMPORTS: set[tuple[str, str]] = set()


def _allowed(rel: str, target: str) -> bool:
    return any(rel == file and (target == name or target.startswith(name + "."))
               for file, name in ALLOWED_WORKER_IMPORTS)


def test_app_never_imports_or_names_the_worker() -> None:
    """``app`` sits below ``worker``: no import of it, lazy or not, and no command string naming it."""
    worker_modules = {module_name(f) for f in (ROOT / "worker").rglob("*.py")} - {"worker"}
    offenders = []
    for file in sorted((ROOT / "app").rglob("*.py")):
        rel = str(file.relative_to(ROOT))
        for line, target in all_imports(file):
            if target.split(".")[0] == "worker" and not _allowed(rel, target):
                offenders.append(f"{rel}:{line} imports {target}")
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                    node.value == m or node.value.startswith((m + ":", m + ".")) for m in worker_modules):
                offenders.append(f"{rel}:{node.lineno} names {node.value!r}")
    assert offenders == []


def test_the_checks_see_an_arrow_up_and_a_cycle(tmp_path) -> None:  # noqa: ANN001
    """The analysis itself: a lazy import is found, a relative import resolves, a two-module cycle is a cycle."""
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "__init__.py").write_text("")
        (tmp_path / "pkg" / "a.py").write_text("from .b import thing\n\ndef f():\n    import worker.tasks\n")
        (tmp_path / "pkg" / "b.py").write_text("from pkg import a\n")
        (tmp_path / "pkg" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from pkg import a\n\ndef g():\n    from pkg import d\n")
        (tmp_path / "pkg" / "d.py").write_text("def h():\n    import pkg.c\n")
        assert (4, "worker.tasks") in all_imports(tmp_path / "pkg" / "a.py")
        graph = module_level_graph(("pkg",))
        assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.c"] == set()
        assert cycles(graph) == [["pkg.a", "pkg.b"]]
        # counted with function-local imports, c <-> d is a cycle as well (TYPE_CHECKING still is not)
        assert cycles(import_graph(("pkg",))) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    finally:
        ROOT = saved


def test_no_import_cycle_even_through_function_local_imports() -> None:
    """Every package of ours, every import at any depth: the torchrun child's entry point, for one,
    lives in its own module (``lelp.devices.ddp_rank``) so the launcher never imports the pipeline back."""
    assert cycles(import_graph(("lelp", "app", "worker", "demo"))) == []


def test_lelp_and_app_never_import_upwards() -> None:
    floors = {"lelp": 0, "app": 1, "worker": 2}
    offenders = []
    for package in ("lelp", "app"):
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = str(file.relative_to(ROOT))
            for line, target in all_imports(file):
                top = target.split(".")[0]
                if floors.get(top, -1) > floors[package] and not _allowed(rel, target):
                    offenders.append(f"{rel}:{line} imports {target}")
    assert offenders == []
