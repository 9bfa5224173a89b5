"""What the ``lelp`` client verbs print for people: tables and one-line summaries (``gh``-style).

``--json`` bypasses all of this and prints the API's objects whole, for scripts; here a
person gets the few columns that tell resources apart (a job's training history, a
dataset's column list and every sha256 stay out), sized to the terminal by rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]


def _console():  # noqa: ANN202  (rich is imported only when something is printed)
    from rich.console import Console

    return Console(soft_wrap=False, highlight=False)


def when(value: str | None) -> str:
    """``2026-12-07T07:31:32.123+00:00`` -> ``2026-12-07 07:31`` (UTC, minutes are enough in a table)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``; nothing for an unknown duration."""
    if seconds is None or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def job_seconds(job: Row, now: datetime | None = None) -> float | None:
    """How long the job has run: start to finish, or start to now while it runs."""
    started = job.get("started_at")
    if not started:
        return None
    start = datetime.fromisoformat(str(started).replace("Z", "+00:00"))
    end_text = job.get("finished_at")
    if end_text:
        end = datetime.fromisoformat(str(end_text).replace("Z", "+00:00"))
    else:
        end = now or datetime.now(start.tzinfo or UTC)
    return (end - start).total_seconds()


def size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def count(n: int | None) -> str:
    """``22713602`` -> ``22.7M``."""
    if n is None:
        return ""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


def percent(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def scores(metrics: Row | None) -> tuple[float | None, float | None]:
    """(student accuracy, teacher accuracy) from a job's or model's metrics, where it has them."""
    metrics = metrics or {}
    student = (metrics.get("student") or {}).get("accuracy")
    teacher = (metrics.get("teacher") or {}).get("accuracy")
    return student, teacher


def of_teacher(metrics: Row | None) -> str:
    """The student's accuracy as a share of the teacher's: the product's headline figure."""
    student, teacher = scores(metrics)
    if student is None or not teacher:
        return ""
    return f"{100 * student / teacher:.0f}%"


def labels(values: Iterable[Any] | None, limit: int = 4) -> str:
    values = [str(v) for v in (values or [])]
    shown = ", ".join(values[:limit])
    return shown + (f" +{len(values) - limit}" if len(values) > limit else "")


def student_kind(job: Row) -> str:
    student = job.get("student") or {}
    return str(student.get("kind") or student.get("architecture") or "")


# --- one column set per resource ------------------------------------------------------------------

Column = tuple[str, Callable[[Row], str]]

COLUMNS: dict[str, list[Column]] = {
    "teacher": [("ID", lambda r: r["id"]), ("NAME", lambda r: r.get("name", "")),
                ("ARCHITECTURE", lambda r: r.get("architecture", "")),
                ("LABELS", lambda r: labels(r.get("labels"))), ("PARAMS", lambda r: count(r.get("parameters"))),
                ("PAIRS", lambda r: "yes" if r.get("text_pairs") else ""),
                ("CREATED", lambda r: when(r.get("created_at")))],
    "base model": [("ID", lambda r: r["id"]), ("NAME", lambda r: r.get("name", "")),
                   ("ARCHITECTURE", lambda r: r.get("architecture", "")),
                   ("PARAMS", lambda r: count(r.get("parameters"))), ("CREATED", lambda r: when(r.get("created_at")))],
    "dataset": [("ID", lambda r: r["id"]), ("NAME", lambda r: r.get("name", "")),
                ("FORMAT", lambda r: r.get("format", "")), ("ROWS", lambda r: str(r.get("rows", ""))),
                ("LABELLED", lambda r: str(r.get("labelled_rows", ""))),
                ("LABELS", lambda r: labels(f"{k}: {v}" for k, v in (r.get("label_counts") or {}).items())),
                ("CREATED", lambda r: when(r.get("created_at")))],
    "job": [("ID", lambda r: r["id"]), ("STATUS", lambda r: r.get("status", "")),
            ("METHOD", lambda r: r.get("method", "")), ("STUDENT", student_kind),
            ("ACCURACY", lambda r: percent(scores(r.get("metrics"))[0])),
            ("OF TEACHER", lambda r: of_teacher(r.get("metrics"))),
            ("DURATION", lambda r: duration(job_seconds(r))),
            ("TEACHER", lambda r: r.get("teacher_id") or ""), ("TRAIN", lambda r: r.get("train_dataset_id") or ""),
            ("CREATED", lambda r: when(r.get("created_at")))],
    "model": [("ID", lambda r: r["id"]), ("JOB", lambda r: r.get("job_id") or ""),
              ("METHOD", lambda r: r.get("method", "")), ("STUDENT", lambda r: r.get("kind", "")),
              ("LABELS", lambda r: labels(r.get("labels"))),
              ("ACCURACY", lambda r: percent(scores(r.get("metrics"))[0])),
              ("OF TEACHER", lambda r: of_teacher(r.get("metrics"))), ("SIZE", lambda r: size(r.get("size_bytes"))),
              ("CREATED", lambda r: when(r.get("created_at")))],
}


# Columns that give way first on a narrow terminal (cut with "…"); the others keep their width.
SQUEEZABLE = frozenset({"TEACHER", "TRAIN", "JOB", "LABELS", "NAME", "ARCHITECTURE", "CREATED"})


MIN_SQUEEZED = 8  # a squeezed column keeps this much of its text (plus "…"), or goes


def fit_widths(titles: list[str], cells: list[list[str]], width: int, gap: int = 2) -> list[int]:
    """Column widths for one line per row in ``width`` characters, like ``gh``: ids and figures keep
    their width; ``SQUEEZABLE`` columns are cut (rightmost first), then left out (width 0)."""
    widths = [max([len(t)] + [len(r[i]) for r in cells]) for i, t in enumerate(titles)]

    def total() -> int:
        shown = [w for w in widths if w > 0]
        return sum(shown) + gap * (len(shown) - 1)

    squeezable = [i for i in reversed(range(len(titles))) if titles[i] in SQUEEZABLE]
    for i in squeezable:
        if total() <= width:
            break
        widths[i] = max(MIN_SQUEEZED, widths[i] - (total() - width))
    for i in squeezable:
        if total() <= width:
            break
        widths[i] = 0
    return widths


def table(noun: str, page: Row) -> None:
    """A list page as a table, and how to get the next page when there is one."""
    from rich.table import Table

    rows = page.get("data") or []
    console = _console()
    if not rows:
        console.print(f"no {noun}s")
        return
    columns = COLUMNS[noun]
    titles = [title for title, _ in columns]
    cells = [[get(row) for _, get in columns] for row in rows]
    widths = fit_widths(titles, cells, console.width)
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", collapse_padding=True)
    keep = [i for i, w in enumerate(widths) if w > 0]
    for i in keep:
        grid.add_column(titles[i], no_wrap=True, overflow="ellipsis", width=widths[i])
    for row in cells:
        grid.add_row(*(row[i] for i in keep))
    console.print(grid)
    if page.get("has_more") and page.get("next_cursor"):
        console.print(f"more: --after {page['next_cursor']}")


def details(noun: str, body: Row) -> None:
    """One resource as ``field  value`` lines: its table columns, then its other plain fields."""
    from rich.table import Table

    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    shown, values = set(), set()
    for title, get in COLUMNS[noun]:
        value = get(body)
        if value != "":
            grid.add_row(title.lower(), value)
        shown.add(title.lower())
        values.add(value)
    for key, value in body.items():
        if (key in shown or key.endswith("_at") or isinstance(value, dict | list) or value in (None, "")
                or str(value) in values or key == "size_bytes"):  # already shown, under its column's name
            continue
        grid.add_row(key.replace("_", " "), str(value))
    extra = {"job": job_extra, "model": model_extra}.get(noun)
    if extra is not None:
        for key, value in extra(body):
            grid.add_row(key, value)
    _console().print(grid)


def _params(body: Row) -> str:
    return ", ".join(f"{k}={v}" for k, v in (body.get("hyperparameters") or {}).items() if v is not None)


def job_extra(job: Row) -> list[tuple[str, str]]:
    from app.client.stages import describe

    lines: list[tuple[str, str]] = []
    if job.get("status") in ("queued", "running"):
        progress = job.get("progress") or {}
        overall = progress.get("overall_fraction")
        lines.append(("stage", describe(progress) + (f" ({percent(overall)} of the job)" if overall else "")))
    if _params(job):
        lines.append(("hyperparameters", _params(job)))
    error = job.get("error")
    if error:
        lines.append(("error", f"{error.get('code')}: {error.get('message')}"))
    if job.get("metrics"):
        lines.append(("result", metrics_line(job["metrics"])))
    if job.get("model_id"):
        lines.append(("next", f"lelp models predict {job['model_id']} \"some text\"; "
                              f"lelp models report {job['model_id']}"))
    return lines


def model_extra(model: Row) -> list[tuple[str, str]]:
    lines = [("result", metrics_line(model["metrics"]))] if model.get("metrics") else []
    return lines + [("next", f"lelp models predict {model['id']} \"some text\"; lelp models download {model['id']} "
                             "--format onnx")]


def metrics_line(metrics: Row) -> str:
    """``accuracy 81.2% (teacher 84.0%, 97% of it), agreement 90.1%, 4.2x faster, 12.0 MB``."""
    student, teacher = scores(metrics)
    parts = []
    if student is not None:
        text = f"accuracy {percent(student)}"
        if teacher is not None:
            text += f" (teacher {percent(teacher)}" + (f", {of_teacher(metrics)} of it)" if teacher else ")")
        parts.append(text)
    if metrics.get("agreement") is not None:
        parts.append(f"agreement with the teacher {percent(metrics['agreement'])}")
    s_speed = (metrics.get("student") or {}).get("sentences_per_second")
    t_speed = (metrics.get("teacher") or {}).get("sentences_per_second")
    if s_speed and t_speed:
        parts.append(f"{s_speed / t_speed:.1f}x the teacher's speed")
    if (metrics.get("student") or {}).get("size_bytes"):
        parts.append(size(metrics["student"]["size_bytes"]))
    return ", ".join(parts) or "no figures"


def job_summary(job: Row) -> str:
    """One line for a job: what it is, where it stands, and what comes next."""
    status = job.get("status", "")
    head = f"{job['id']} {status}"
    took = duration(job_seconds(job))
    if status == "succeeded":
        return (f"{head} in {took}: model {job.get('model_id')}; {metrics_line(job.get('metrics') or {})}"
                if took else f"{head}: model {job.get('model_id')}; {metrics_line(job.get('metrics') or {})}")
    if status == "failed":
        error = job.get("error") or {}
        return f"{head}: {error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    if status == "cancelled":
        return f"{head}" + (f" after {took}" if took else "")
    return (f"{head}: {job.get('method')} -> {student_kind(job)} student, teacher {job.get('teacher_id')}, "
            f"train {job.get('train_dataset_id')}; follow it with `lelp jobs wait {job['id']}`")


def prediction_table(body: Row) -> None:
    """One row per input: the label, its score, then every class's probability."""
    from rich.table import Table

    predictions = body.get("predictions") or []
    classes = list((predictions[0].get("probabilities") or {}).keys()) if predictions else []
    grid = Table(box=None, pad_edge=False, header_style="bold")
    grid.add_column("#", justify="right")
    grid.add_column("LABEL")
    for name in classes:
        grid.add_column(f"P({name})", justify="right")
    for i, p in enumerate(predictions, 1):
        probs = p.get("probabilities") or {}
        grid.add_row(str(i), str(p.get("label")), *(f"{probs.get(c, 0):.3f}" for c in classes))
    _console().print(grid)
