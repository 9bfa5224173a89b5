"""docs/ARCHITECTURE.md describes only what is in the repository: every path and module it names exists.

A path is a backticked name under one of the repository's folders (``lelp/job.py``,
``app/ui/templates/``), optionally with ``::name`` (then the file must define or mention
``name``); a module is a backticked dotted name under ``lelp``, ``app``, ``worker`` or ``demo``
(``lelp.data.splits.split_sizes``: the longest prefix that is a module, the rest a name in it).
The tree drawing in "Where things are" is checked file by file too.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.queue import EXPORT_TASK_NAME, TASK_NAME, WEBHOOK_TASK_NAME

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
FOLDERS = ("lelp/", "app/", "worker/", "demo/", "tests/", "docs/", "scripts/", "benchmarks/")
NOT_MODULES = {TASK_NAME, EXPORT_TASK_NAME, WEBHOOK_TASK_NAME}  # Celery task names (app.queue), not modules


def backticked(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def named_paths(text: str) -> set[str]:
    """``path`` or ``path::name`` tokens under a repository folder (no placeholders, no spaces)."""
    return {t for t in backticked(text) if t.startswith(FOLDERS) and not re.search(r"[\s{}*<>]", t)}


def named_modules(text: str) -> set[str]:
    """Dotted names under our packages, cut at the first call or subscript."""
    found = set()
    for token in backticked(text):
        match = re.match(r"((?:lelp|app|worker|demo)(?:\.[A-Za-z_]\w*)+)", token)
        if (match and not token.startswith(FOLDERS) and match.group(1) not in NOT_MODULES
                and not match.group(1).endswith((".pid", ".lock", ".log", ".json"))):  # file names
            found.add(match.group(1))
    return found


def tree_files(text: str) -> set[str]:
    """The files of the tree drawing: ``name.py`` words under their folder's line."""
    block = text.split("## Where things are", 1)[1].split("```", 2)[1]
    files, top, sub = set(), "", ""
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if not words:
            continue
        if indent == 0 and words[0].endswith("/"):
            top, sub = words[0], ""
            continue
        if indent == 2 and words[0].endswith("/"):
            sub = words[0]
        elif indent == 2:
            sub = ""
        for word in re.findall(r"\b(\w+\.(?:py|j2))\b", re.sub(r"`[^`]*`", "", line)):
            files.add(f"{top}{sub}{word}")
    return files


def _exists(path: str) -> bool:
    file, _, name = path.partition("::")
    target = ROOT / file
    if not target.exists():
        return False
    return not name or name.split(".")[0] in target.read_text()


def _module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[cut:]
            return not rest or rest[0] in source.read_text() or (base / f"{rest[0]}.py").is_file()
    return False


def test_the_checks_catch_a_missing_file_and_a_missing_name() -> None:
    text = ("`lelp/job.py` `lelp/nowhere.py` `lelp/job.py::DistillJob` `lelp/job.py::NoSuchThing` "
            "`lelp.data.splits.split_sizes` `lelp.data.splits.nothing_here` `checkpoints/{job_id}/`")
    assert named_paths(text) == {"lelp/job.py", "lelp/nowhere.py", "lelp/job.py::DistillJob",
                                 "lelp/job.py::NoSuchThing"}
    assert [p for p in sorted(named_paths(text)) if not _exists(p)] == ["lelp/job.py::NoSuchThing",
                                                                       "lelp/nowhere.py"]
    assert [m for m in sorted(named_modules(text)) if not _module_exists(m)] == ["lelp.data.splits.nothing_here"]
    tree = "## Where things are\n```\nlelp/\n  job.py  gone.py\n  data/   splits.py\n```\n"
    assert tree_files(tree) == {"lelp/job.py", "lelp/gone.py", "lelp/data/splits.py"}


def test_every_path_the_architecture_names_exists() -> None:
    text = DOC.read_text()
    assert len(named_paths(text)) > 50  # the document does name the files it describes
    assert sorted(p for p in named_paths(text) if not _exists(p)) == []


def test_every_module_the_architecture_names_exists() -> None:
    text = DOC.read_text()
    assert sorted(m for m in named_modules(text) if not _module_exists(m)) == []


def test_the_tree_lists_real_files_and_every_package_module() -> None:
    """Each file drawn exists, and each module of lelp/, app/ (but its sub-packages' long lists) and
    worker/ appears in the drawing, so a new module is placed in it."""
    files = tree_files(DOC.read_text())
    assert sorted(f for f in files if not (ROOT / f).is_file()) == []
    drawn = {Path(f).name for f in files}
    for folder in ("lelp", "worker", *(str(p.relative_to(ROOT)) for p in (ROOT / "lelp").iterdir() if p.is_dir()
                                        and (p / "__init__.py").is_file())):
        missing = [f.name for f in (ROOT / folder).glob("*.py") if f.name != "__init__.py" and f.name not in drawn]
        assert missing == [], folder
