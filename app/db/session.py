"""Engines and sessions for Postgres (psycopg 3) and SQLite (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    for legacy in ("postgresql://", "postgres://"):
        if url.startswith(legacy):
            return "postgresql+psycopg://" + url[len(legacy):]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    # WAL lets the API read while the worker writes; the busy timeout turns lock contention
    # into a short wait instead of "database is locked"; SQLite needs foreign keys switched on.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# A process whose link to Postgres drops (a host cut off, a restarted server) must get an error in
# seconds, not block a write for the kernel's ~15 minutes of retransmissions: libpq's connect
# timeout, TCP keepalives for idle connections and a TCP user timeout for unacknowledged writes.
POSTGRES_LINK_LIMITS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
                        "keepalives_interval": 3, "keepalives_count": 3, "tcp_user_timeout": 15000}


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with the right options for the backend named by ``url``."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", dict(POSTGRES_LINK_LIMITS))
    return sa.create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: services return ORM rows that the router serialises after commit.
    return sessionmaker(bind=engine, expire_on_commit=False)


@lru_cache(maxsize=8)
def _cached_sessionmaker(url: str) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(url))


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (the worker's unit of work)."""
    session = _cached_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
