"""How a failed job ends: an exception mapped to a final state and a ``{code, message}`` a user can read.

Messages name ids, never server paths (``Redactions`` replaces them); tracebacks go to the
worker log only.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from app.db import job_states
from app.db.session import session_scope
from app.settings import Settings
from app.storage import ArtifactStore

log = logging.getLogger("lelp.worker")


def finish(url: str, job_id: str, status: str, code: str, message: str) -> None:
    """End the job in its own unit of work (the delivery's session is long closed)."""
    with session_scope(url) as session:
        job_states.finish(session, job_id, status, error={"code": code, "message": message})


class Redactions:
    """Server paths a failure message may contain, and the ids to show instead."""

    def __init__(self, settings: Settings) -> None:
        self.names: dict[str, str] = {str(settings.data_dir): "the service's data directory"}
        store_root = ArtifactStore(settings.artifact_url).local_path("")
        if store_root is not None:
            self.names[str(store_root)] = "the artifact store"

    def add(self, path: Path | str | None, name: str) -> None:
        if path is not None:
            self.names[str(path)] = name

    def __call__(self, message: str) -> str:
        for path in sorted(self.names, key=len, reverse=True):  # the most specific first
            message = message.replace(path, self.names[path])
        return message


def record_failure(url: str, job_id: str, exc: BaseException, shown: Any = None) -> str:
    """Map an exception to the job's final state and a ``{code, message}`` a user can read.

    Messages name ids, never server paths (``shown`` replaces them). A ``BaseException``
    that is not an ``Exception`` (a Rust panic in the teacher's tokenizer) fails the job at
    once with ``model_failed``: a redelivery would only panic again.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from lelp.errors import JobCancelled, LELPError

    def clean(message: str) -> str:
        return shown(message) if shown is not None else message

    if isinstance(exc, JobCancelled):
        finish(url, job_id, "cancelled", exc.code, clean(exc.message))
        return "cancelled"
    if isinstance(exc, LELPError):
        log.info("job %s failed: %s", job_id, exc)
        finish(url, job_id, "failed", exc.code, clean(exc.message))
        return "failed"
    if isinstance(exc, SoftTimeLimitExceeded):
        finish(url, job_id, "failed", "time_limit_exceeded", "the job ran past the configured time limit")
        return "failed"
    if not isinstance(exc, Exception):
        first = (str(exc).splitlines() or [""])[0][:200]
        log.error("job %s: the model's code crashed: %s: %s", job_id, type(exc).__name__, first)
        finish(url, job_id, "failed", "model_failed",
                clean(f"the teacher's code crashed ({type(exc).__name__}: {first}); the job is not retried: "
                      "upload a teacher whose tokenizer transformers' own classes build"))
        return "failed"
    log.error("job %s crashed:\n%s", job_id, "".join(traceback.format_exception(exc)))
    finish(url, job_id, "failed", "internal_error",
            f"the worker hit an unexpected {type(exc).__name__}; the details are in the worker log")
    return "failed"
