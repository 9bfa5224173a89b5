"""Errors a user can cause, each with a stable machine-readable code.

The CLI prints them as one line and exits non-zero; the service maps them to 4xx
responses. Anything that is not an ``LELPError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class LELPError(Exception):
    """Base class of every error caused by the user's input or settings."""

    code = "lelp_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:  # a finer code than the class's, e.g. "single_class" for a DataError
            self.code = code


class DataError(LELPError):
    """A data file is missing, unreadable, empty or lacks a needed column or label."""

    code = "invalid_data"


class TeacherError(LELPError):
    """A teacher directory is not a safe, loadable sequence classifier."""

    code = "invalid_teacher"


class ConfigError(LELPError):
    """Hyperparameters or options that cannot work together."""

    code = "invalid_config"


class ArtifactError(LELPError):
    """A student artifact is missing, damaged, or of another format version."""

    code = "invalid_artifact"


class JobCancelled(LELPError):
    """Raised inside training when the caller's cancel check answers True."""

    code = "cancelled"


def bounded_traceback(exc: BaseException, line_chars: int = 1000, total_chars: int = 20_000) -> str:
    """``exc``'s traceback with every line cut to ``line_chars`` and the whole to ``total_chars``:
    an exception's message may carry user bytes (a 50 MiB archive member name was a 52 MB log
    record). The API's and the worker's logs of unexpected errors go through it."""
    import traceback

    lines = [line if len(line) <= line_chars else line[:line_chars] + f"... ({len(line):,} characters)\n"
             for chunk in traceback.format_exception(exc) for line in chunk.splitlines(keepends=True)]
    text = "".join(lines)
    return text if len(text) <= total_chars else text[:total_chars // 2] + "\n...\n" + text[-total_chars // 2:]
