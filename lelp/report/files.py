"""Reading and writing the report's files in a student artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lelp.errors import ArtifactError

REPORT_FILE = "report.html"
REPORT_DATA_FILE = "report_data.json"
_INPUTS = ("metrics.json", REPORT_DATA_FILE, "lelp_student.json")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report_data(artifact_dir: str | Path, data: dict) -> Path:
    path = Path(artifact_dir) / REPORT_DATA_FILE
    _atomic_write(path, json.dumps(data, separators=(",", ":"), allow_nan=False))
    return path


def _read(directory: Path, name: str) -> dict:
    path = directory / name
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {name}: it is not a student artifact written by `lelp distill`"
                            + (" of this version" if name == REPORT_DATA_FILE else ""), param="dir")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}", param="dir") from None
    if not isinstance(value, dict):
        raise ArtifactError(f"{path} does not hold a JSON object", param="dir")
    return value


def write_report(artifact_dir: str | Path, out: str | Path | None = None) -> Path:
    """(Re)draw ``report.html`` from the artifact's own files; returns the page's path."""
    from lelp.report.render import render_report

    directory = Path(artifact_dir)
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory", param="dir")
    metrics, data, manifest = (_read(directory, name) for name in _INPUTS)
    target = Path(out) if out is not None else directory / REPORT_FILE
    try:
        html = render_report(metrics, data, manifest)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ArtifactError(f"{directory}: the report data is not in the expected shape ({exc})",
                            param="dir") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, html)
    return target
