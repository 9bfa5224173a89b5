"""The docs run and stand alone: their ``lelp`` commands and flags exist, their paths are in the repo.

Every ``lelp ...`` command in a fenced code block (and in an inline code span that starts
with ``lelp``) of README.md and docs/*.md is parsed against the real ``lelp`` command tree
(typer's click commands): each sub-command must exist, each ``--flag`` must be one of its
options, and click's own parser must accept the arguments. Every repository path a doc
names (``app/client/http.py``, ``docs/API.md``, ``demo/data/sst2_dev.csv``, a dotted module
such as ``lelp.report.collect``, a relative markdown link) must exist. And no doc calls
anything but today's defaults "the default".

benchmarks/README.md is the benchmarks' own log and names the files each run wrote.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from app.queue import EXPORT_TASK_NAME, TASK_NAME, WEBHOOK_TASK_NAME

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The repository's top level: a path in a doc that starts with one of these is the repository's.
TOP_DIRS = ("app", "lelp", "worker", "tests", "scripts", "docs", "demo", "benchmarks")
TOP_FILES = ("README.md", "pyproject.toml", "Dockerfile", "Dockerfile.gpu", "docker-compose.yml", "alembic.ini")

FENCE = re.compile(r"^([ \t]*)```[^\n]*\n(.*?)^\1```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SHELL_STOPS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", ")"}


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def code_blocks(text: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """The doc without its fenced blocks (inline code spans are read from this)."""
    return FENCE.sub("", text)


def logical_lines(block: str) -> list[str]:
    """Lines with backslash continuations joined."""
    return block.replace("\\\n", " ").splitlines()


def lelp_commands(line: str) -> list[list[str]]:
    """The ``lelp`` invocations on a shell line: argv after ``lelp``, up to a pipe, ``&&``, ``;`` or comment."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in a comment or a prose-like line: nothing to check
        return []
    commands, i = [], 0
    while i < len(tokens):
        starts = tokens[i] == "lelp" and (i == 0 or tokens[i - 1] in SHELL_STOPS | {"(", "$(", "$", "time"}
                                         or tokens[i - 1].endswith("="))
        if starts:
            argv = []
            for token in tokens[i + 1:]:
                if token in SHELL_STOPS or token in ("(",):
                    break
                argv.append(token)
            commands.append(argv)
        i += 1
    return commands


def all_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in code_blocks(text):
            for line in logical_lines(block):
                found += [(doc_id(doc), argv) for argv in lelp_commands(line.strip().removeprefix("$ "))]
        for span in INLINE.findall(prose(text)):
            if span.startswith("lelp "):
                found += [(doc_id(doc), argv) for argv in lelp_commands(span)]
    return found


def lelp_tree():  # noqa: ANN201
    import typer.main

    from worker.cli import app

    return typer.main.get_command(app)


def check_command(root, argv: list[str]) -> str | None:  # noqa: ANN001
    """None when ``lelp ARGV``'s sub-commands and flags exist, else what is wrong."""
    command, path = root, ["lelp"]
    rest = list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            return f"`{' '.join(path)} {name}`: no such command (choices: {', '.join(sorted(command.commands))})"
        command, path = command.commands[name], [*path, name]
    if hasattr(command, "commands") and not rest:
        return None  # a group named alone prints its help
    if hasattr(command, "commands"):
        return f"`{' '.join(path)}` needs a sub-command before {rest[0]}"
    options = {opt for param in command.params for opt in (*param.opts, *getattr(param, "secondary_opts", []))}
    options |= {"--help"}
    for token in rest:
        if token == "--":
            break
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            if flag not in options:
                return f"`{' '.join(path)}` has no option {flag} (it has {', '.join(sorted(options))})"
    return parse(command, path, rest)


def parse(command, path: list[str], args: list[str]) -> str | None:  # noqa: ANN001
    """Click's own parse of the arguments (counts, value types, choices); a required option the
    doc leaves out for brevity is fine, anything else click would refuse is not."""
    import typer
    from typer._click import exceptions  # typer 0.29 vendors click: its own exception classes

    try:
        command.make_context(" ".join(path), list(args), resilient_parsing=False)
    except exceptions.MissingParameter:
        return None
    except exceptions.UsageError as exc:
        return f"`{' '.join(path)} {' '.join(args)}`: {exc.format_message()}"
    except typer.Exit:  # --help: printed, then exits
        return None
    return None


COMMANDS = all_commands()


def test_the_docs_show_lelp_commands():
    """The extraction finds what the README shows (a broken regex would make every check below vacuous)."""
    shown = {" ".join(argv[:2]) for _, argv in COMMANDS}
    assert {"jobs submit", "models predict", "teachers upload", "datasets upload"} <= shown
    assert any(argv[:1] == ["serve"] for _, argv in COMMANDS)
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("doc", "argv"), COMMANDS, ids=[f"{d}: lelp {' '.join(a)}"[:90] for d, a in COMMANDS])
def test_every_lelp_command_in_the_docs_exists(doc, argv):
    problem = check_command(lelp_tree(), argv)
    assert problem is None, f"{doc}: {problem}"


def test_the_checker_catches_a_missing_command_and_flag():
    root = lelp_tree()
    assert check_command(root, ["jobs", "submit", "--teacher", "t", "--train", "d", "--wait"]) is None
    assert check_command(root, ["models", "download", "mdl_x", "--format", "onnx"]) is None
    assert "no option --frobnicate" in check_command(root, ["jobs", "submit", "--frobnicate"])
    assert "no such command" in check_command(root, ["jobs", "explode"])
    assert "Invalid value for '--epochs'" in check_command(root, ["jobs", "submit", "--epochs", "many"])
    assert check_command(root, ["jobs", "submit", "--help"]) is None
    assert "unexpected extra argument" in check_command(root, ["jobs", "show", "job_a", "job_b"])
    assert lelp_commands("x=$(lelp jobs list --json | jq .) && lelp serve --port 1  # lelp nothing") == [
        ["jobs", "list", "--json"], ["serve", "--port", "1"]]


# --- paths ------------------------------------------------------------------------------------------

_TOPS, _FILES = "|".join(TOP_DIRS), "|".join(re.escape(f) for f in TOP_FILES)
PATHISH = re.compile(rf"(?<![\w./$-])((?:{_TOPS})/[\w./-]*[\w/]|(?:{_FILES}))(?![\w/])")
MODULE = re.compile(r"(?<![\w./])((?:lelp|app|worker|demo|tests)(?:\.[a-z_][a-z0-9_]*)+)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def mentioned_paths(text: str) -> set[str]:
    """Repository paths a doc names anywhere: prose, code spans, code blocks (placeholders left out)."""
    found = set()
    for match in PATHISH.finditer(text):
        path = match.group(1).rstrip(".")
        if not any(c in path for c in "<>{}*$") and "..." not in path:
            found.add(path)
    return found


# Celery task names read like modules (app.queue.TASK_NAME and the worker's other tasks)
TASK_NAMES = {TASK_NAME, EXPORT_TASK_NAME, WEBHOOK_TASK_NAME}  # Celery task names (app.queue), not modules


FILE_SUFFIXES = (".py", ".md", ".pid", ".lock", ".log", ".json")  # file names like worker.pid, not modules


def mentioned_modules(text: str) -> set[str]:
    return {m.group(1) for span in INLINE.findall(prose(text)) for m in MODULE.finditer(span)
            if not m.group(1).endswith(FILE_SUFFIXES) and m.group(1) not in TASK_NAMES}


def module_exists(dotted: str) -> bool:
    """``lelp.report.collect`` is a file or package; trailing parts may name things inside it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return n >= min(2, len(parts))
    return False


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_in_the_docs_exists(doc):
    text = doc.read_text(encoding="utf-8")
    missing = sorted(p for p in mentioned_paths(text) if not (REPO / p).exists())
    missing += sorted(f"module {m}" for m in mentioned_modules(text) if not module_exists(m))
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (doc.parent / target).exists():
            missing.append(f"link {target}")
    assert not missing, f"{doc_id(doc)} names what the repository does not have: {missing}"


def test_the_path_check_sees_paths_and_modules():
    text = "See `app/client/http.py`, `lelp.report.collect`, and\n```\npython benchmarks/speed_check.py\n```\n"
    assert mentioned_paths(text) == {"app/client/http.py", "benchmarks/speed_check.py"}
    assert mentioned_modules(text) == {"lelp.report.collect"}
    assert module_exists("lelp.report.collect") and not module_exists("lelp.nowhere")
    assert not mentioned_paths("`exports/{model_id}/` and `student/metrics.json`")


# --- defaults -----------------------------------------------------------------------------------

CALLED_DEFAULT = re.compile(r"`([\w-]+)`\s*\((?:the )?default\)|default(?: student| method)?(?: is|:)?\s*\(?`([\w-]+)`",
                            re.I)


def test_the_docs_call_only_todays_defaults_the_default():
    from app.vocabulary import DEFAULT_METHOD, DEFAULT_STUDENT_KIND, METHOD_CHOICES, STUDENT_KINDS

    wrong = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in CALLED_DEFAULT.finditer(text):
            before = text[max(0, match.start() - 20):match.start()].lower()
            if any(word in before for word in ("previous", "former", "old", "was")):
                continue
            name = match.group(1) or match.group(2)
            if name in STUDENT_KINDS and name != DEFAULT_STUDENT_KIND:
                wrong.append(f"{doc_id(doc)}: {match.group(0)!r} (the default student is {DEFAULT_STUDENT_KIND})")
            if name in METHOD_CHOICES and name != DEFAULT_METHOD:
                wrong.append(f"{doc_id(doc)}: {match.group(0)!r} (the default method is {DEFAULT_METHOD})")
    assert not wrong, wrong
