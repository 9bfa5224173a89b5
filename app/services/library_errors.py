"""The one place that turns a library error (``lelp.errors.LELPError``) into an API error.

The library speaks to a command-line user: it names the files it was given (for an upload,
a temp file of ours) and the flags to pass (``--text-column``). An HTTP caller knows the file
it sent and the API's field names, so the message is rewritten here: known paths become what
the caller knows them as, any other path under our own directories becomes "the file", CLI
flags become field names, and the library's ``param`` becomes the API field.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from app.errors import AppError, BadRequest, Unprocessable

if TYPE_CHECKING:  # pragma: no cover
    from lelp.errors import LELPError

# CLI flag (with its metavar, if the library names one) -> the API's field name.
FLAG_FIELDS = {
    "--student-base DIR": "student.base", "--student-base": "student.base",
    "--text-column": "text_column", "--text-pair-column": "text_pair_column", "--label-column": "label_column",
    "--subclasses": "hyperparameters.subclasses", "--max-length": "hyperparameters.max_length",
    "--batch-size": "hyperparameters.batch_size", "--learning-rate": "hyperparameters.learning_rate",
    "--epochs": "hyperparameters.epochs", "--eval": "eval_dataset_id", "--train": "train_dataset_id",
    "--validation": "validation_dataset_id",
    "--teacher": "teacher_id", "--method": "method", "--student": "student.kind", "--device": "device",
}
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)(?: [A-Z]+\b)?")
# The library's param names that differ from the job body's.
JOB_PARAMS = {"student_base": "student.base", "student": "student.kind", "train_path": "train_dataset_id",
              "eval_path": "eval_dataset_id", "validation_path": "validation_dataset_id",
              "teacher_dir": "teacher_id", "subclasses": "hyperparameters.subclasses",
              "beta": "hyperparameters.beta", "tau": "hyperparameters.tau", "alpha": "hyperparameters.alpha",
              "epochs": "hyperparameters.epochs", "learning_rate": "hyperparameters.learning_rate",
              "batch_size": "hyperparameters.batch_size", "max_length": "hyperparameters.max_length"}


def _field(match: re.Match[str]) -> str:
    whole = match.group(0)
    return FLAG_FIELDS.get(whole) or FLAG_FIELDS.get(f"--{match.group(1)}") or match.group(1).replace("-", "_")


def private_roots() -> list[str]:
    """Directories whose paths mean nothing to a caller (temp files, our data directory)."""
    roots = [tempfile.gettempdir()]
    try:
        from app.settings import get_settings

        settings = get_settings()
        roots += [str(settings.data_dir), settings.artifact_url]
    except Exception:  # noqa: BLE001 - settings that do not parse must not hide the real error
        pass
    return [r.rstrip("/") for r in roots if r and r.startswith("/")]


def api_words(message: str, shown: Mapping[str, str] | None = None, roots: Iterable[str] | None = None) -> str:
    """``message`` with paths and CLI flags rewritten for an HTTP caller."""
    for path, name in sorted((shown or {}).items(), key=lambda kv: -len(kv[0])):
        if path:
            message = message.replace(path, name)
    for root in sorted(set(roots if roots is not None else private_roots()), key=len, reverse=True):
        message = re.sub(re.escape(root) + r"(/[^\s'\",;)]*)?", "the file", message)
    return _FLAG.sub(_field, message)


def api_error(exc: LELPError, *, shown: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
              roots: Iterable[str] | None = None) -> AppError:
    """The API error for a library error: 400 for an option conflict (ConfigError), 422 otherwise."""
    from lelp.errors import ConfigError

    param = (params or {}).get(exc.param or "", exc.param)
    cls = BadRequest if isinstance(exc, ConfigError) else Unprocessable
    return cls(api_words(exc.message, shown, roots), param=param, code=exc.code)
