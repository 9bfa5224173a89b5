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
