"""One vocabulary for the API, the database, the CLIs and the client (torch-free, SQLAlchemy-free).

The method and student-kind lists come from the library (``lelp.method.registry``,
``lelp.students.registry``: both import neither torch nor numpy), so a new method or student
kind shows in the API schema, ``lelp jobs submit --help`` and ``LelpClient`` without a second
list to keep in step. Job statuses are the service's own: one enum for the ORM, the schemas,
the routers, the client and the worker.
"""

from __future__ import annotations

from enum import StrEnum

from lelp.method.registry import DEFAULT_METHOD, METHOD_CHOICES
from lelp.students.registry import DEFAULT_STUDENT_KIND, STUDENT_CHOICES, STUDENT_KINDS

__all__ = ["ACTIVE_STATUSES", "DEFAULT_METHOD", "DEFAULT_STUDENT_KIND", "DEVICE_CHOICES", "FINISHED_STATUSES",
           "METHOD_CHOICES", "STUDENT_CHOICES", "STUDENT_KINDS", "JobStatus", "spoken_list"]


class JobStatus(StrEnum):
    """A job's state; ``app.db.job_states`` holds the only functions that change it."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# What a job may ask for; ``lelp.devices.resolve.resolve_device`` says what each means.
DEVICE_CHOICES = ("auto", "cpu", "gpu")


def spoken_list(values: tuple[str, ...] | list[str], last: str = "or") -> str:
    """``a, b or c``: how help texts list the choices."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"
