"""What the operations endpoints ask the database: is it there, and how many jobs in each status.

The router (``app.api.ops``) holds no SQL; the counts cover every tenant, so the router shows
them only to a caller with the metrics token.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from app.db import repositories as repo

log = logging.getLogger(__name__)


def check_database(make_session: sessionmaker[Session]) -> None:
    """One round trip; raises when the database does not answer."""
    with make_session() as session:
        session.execute(sa.text("SELECT 1"))


def job_counts(make_session: sessionmaker[Session]) -> dict[str, int]:
    """Jobs by status over every tenant; ``{}`` (and a warning) when the database is down."""
    try:
        with make_session() as session:
            return repo.job_counts_by_status(session)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("metrics: cannot count jobs: %s", exc)
        return {}
