"""How a failed job ends: an exception mapped to a final state and a ``{code, message}`` a user can read.

Messages name ids, never server paths (``Redactions`` replaces them); tracebacks go to the
worker log only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.db import job_states
from app.db.session import session_scope
from app.settings import Settings
from app.storage import ArtifactStore

log = logging.getLogger("lelp.worker")


def finish(url: str, job_id: str, status: str, code: str, message: str, claim_token: str | None = None) -> bool:
    """End the job in its own unit of work (the delivery's session is long closed); False: not ours to end."""
    with session_scope(url) as session:
        return job_states.finish(session, job_id, status, error={"code": code, "message": message},
                                 claim_token=claim_token)


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


def record_failure(url: str, job_id: str, exc: BaseException, shown: Any = None,
                   claim_token: str | None = None) -> str:
    """Map an exception to the job's final state and a ``{code, message}`` a user can read.

    Messages name ids, never server paths (``shown`` replaces them). A ``BaseException``
    that is not an ``Exception`` (a Rust panic in the teacher's tokenizer) fails the job at
    once with ``model_failed``: a redelivery would only panic again. With ``claim_token``
    the job ends only if this delivery still holds it; otherwise nothing is written and the
    answer is ``"claim_lost"`` (another delivery runs the job: its checkpoints must stay).
    """
    status = _record(url, job_id, exc, shown, claim_token)
    return status if status else "claim_lost"


def _record(url: str, job_id: str, exc: BaseException, shown: Any, claim_token: str | None) -> str | None:
    from celery.exceptions import SoftTimeLimitExceeded

    from lelp.errors import JobCancelled, LELPError, bounded_traceback

    def clean(message: str) -> str:
        return shown(message) if shown is not None else message

    def end(status: str, code: str, message: str) -> str | None:
        return status if finish(url, job_id, status, code, message, claim_token) else None

    if isinstance(exc, JobCancelled):
        return end("cancelled", exc.code, clean(exc.message))
    if isinstance(exc, LELPError):
        log.info("job %s failed: %s", job_id, exc)
        return end("failed", exc.code, clean(exc.message))
    if isinstance(exc, SoftTimeLimitExceeded):
        return end("failed", "time_limit_exceeded", "the job ran past the configured time limit")
    if not isinstance(exc, Exception):
        first = (str(exc).splitlines() or [""])[0][:200]
        log.error("job %s: the model's code crashed: %s: %s", job_id, type(exc).__name__, first)
        return end("failed", "model_failed",
                   clean(f"the teacher's code crashed ({type(exc).__name__}: {first}); the job is not retried: "
                         "upload a teacher whose tokenizer transformers' own classes build"))
    log.error("job %s crashed:\n%s", job_id, bounded_traceback(exc))
    return end("failed", "internal_error",
               f"the worker hit an unexpected {type(exc).__name__}; the details are in the worker log")
