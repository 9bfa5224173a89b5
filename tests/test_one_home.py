"""One home for each fact: no student-kind or method list is written out outside its table.

The kind table is ``lelp/students/registry.py`` (``KINDS``), the methods table
``lelp/method/registry.py`` (``METHODS``); ``lelp/export/graphs.py`` keeps the one other
per-kind table the issue allows (a kind's ONNX graph; ``tests/lelp/test_export.py`` requires one
per kind). Everything else reads them, so a new kind is one module plus one entry (plus its
graph), and a list cannot drift from the table. Read with ``ast``: nothing is imported but the tables.
"""

from __future__ import annotations

import ast
from pathlib import Path

from lelp.method.registry import METHOD_CHOICES, METHODS, Method
from lelp.students.registry import KINDS, STUDENT_KINDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lelp", "app", "worker", "demo")
TABLES = {"lelp/students/registry.py", "lelp/method/registry.py", "lelp/export/graphs.py"}
KIND_NAMES = set(STUDENT_KINDS)
METHOD_NAMES = set(METHOD_CHOICES) - {"auto"}  # "auto" is also a device and a subclasses value
NOT_A_KIND = {("app/ui/__init__.py", "static")}  # the console's static-files folder


def _strings(nodes: list[ast.expr | None]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def literal_lists(source: str, names: set[str]) -> list[tuple[int, list[str]]]:
    """Collections (list, tuple, set, dict keys) written with two or more of ``names`` in them."""
    found = []
    for node in ast.walk(ast.parse(source)):
        elements = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
        if not isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict) or elements is None:
            continue
        hits = [s for s in _strings(elements) if s in names]
        if len(hits) >= 2:
            found.append((node.lineno, hits))
    return found


def kind_literals(source: str) -> list[tuple[int, str]]:
    """Code (not docstrings or messages) that names one student kind by its string: a fallback or a test."""
    tree = ast.parse(source)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in KIND_NAMES and id(n) not in docstrings]


def _sources() -> list[tuple[str, str]]:
    return [(str(f.relative_to(ROOT)), f.read_text()) for package in PACKAGES
            for f in sorted((ROOT / package).rglob("*.py")) if str(f.relative_to(ROOT)) not in TABLES]


def test_the_checks_find_a_copied_list_and_a_literal_fallback() -> None:
    source = ('"""Mentions ngram and cnn in prose."""\n'
              'SMALL = ("ngram", "static")\nRANK = {"kd": 0, "lelp": 1}\n'
              'def f(row):\n    """cnn"""\n    return row.get("kind", "ngram") + f"the {row} student"\n')
    assert literal_lists(source, KIND_NAMES) == [(2, ["ngram", "static"])]
    assert literal_lists(source, METHOD_NAMES) == [(3, ["kd", "lelp"])]
    assert kind_literals(source) == [(2, "ngram"), (2, "static"), (6, "ngram")]


def test_no_student_kind_or_method_list_outside_the_tables() -> None:
    offenders = [f"{rel}:{line} lists {names}" for rel, source in _sources()
                 for names_set in (KIND_NAMES, METHOD_NAMES) for line, names in literal_lists(source, names_set)]
    assert offenders == []


def test_no_student_kind_named_outside_its_own_module() -> None:
    """A kind's name appears only in its own module (``name = ...``), the tables and the tests."""
    own = {Path(info.path.split(":")[0].replace(".", "/") + ".py").as_posix(): kind for kind, info in KINDS.items()}
    offenders = [f"{rel}:{line} names {value!r}" for rel, source in _sources()
                 for line, value in kind_literals(source) if own.get(rel) != value and (rel, value) not in NOT_A_KIND]
    assert offenders == []


def test_the_tables_cover_every_name() -> None:
    assert set(METHODS) == set(Method) and set(KINDS) == KIND_NAMES


STORE_ROOTS = ("teachers/", "base_models/", "datasets/", "models/", "exports/", "checkpoints/", "cache/")


def store_path_literals(source: str) -> list[tuple[int, str]]:
    """String constants (f-string parts included) that spell a store path out."""
    return [(n.lineno, n.value) for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith(STORE_ROOTS)]


def test_store_paths_come_from_one_helper() -> None:
    """``app.storage.StorePaths`` writes the store's layout once; the API and the worker call it."""
    assert store_path_literals('uri = f"models/{model_id}/{claim}"\nname = "a model"\n') == [(1, "models/")]
    offenders = [f"{rel}:{line} spells {value!r}" for rel, source in _sources()
                 if rel.startswith(("app/", "worker/")) and rel != "app/storage.py"
                 for line, value in store_path_literals(source)]
    assert offenders == []
