"""An outside observer of the queue: how long does a queued job go without a message in the broker?

Every ``poll_s`` it reads the queued jobs from Postgres and the messages from Redis (the
ready lists of the ``cpu``/``gpu`` queues, and the messages a worker reserved since the job
was last queued: kombu's ``unacked`` hash and its ``unacked_index`` delivery times; an older
reservation is a killed worker's leftover, redelivered only after the visibility timeout).
A queued job none of them names has no message: nothing would run it until one is sent.
The observer shares no code with the service's own bookkeeping (it reads the broker's
keys, not ``enqueued_at``), so its figure checks the recovery sweep, not restates it.

While Redis does not answer, every queued job counts as without a message; while Postgres
does not answer, the last known queued set stands. The resolution is ``poll_s``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field

# A reservation made up to this long before the job's row last changed still counts (the worker
# may reserve the message before the sender's "sent" mark commits, which bumps updated_at).
RESERVATION_SLACK_S = 2.0


@dataclass
class Gap:
    job_id: str
    start: float
    end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


def _job_ids(raw: bytes | str) -> list[str]:
    message = json.loads(raw)
    if isinstance(message, list):  # unacked entries are [message, exchange, routing_key]
        message = message[0]
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    args = json.loads(body)[0]
    return [str(a) for a in args]


@dataclass
class MessageWatch:
    dsn: dict
    redis_url: str
    poll_s: float = 0.2
    gaps: list[Gap] = field(default_factory=list)
    samples: int = 0
    _open: dict[str, Gap] = field(default_factory=dict)
    _queued: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="message-watch", daemon=True)
        self._conn = None

    # --- reading the two stores ---------------------------------------------------------------

    def _queued_jobs(self) -> dict[str, float] | None:
        """Queued job ids and when their row last changed (epoch seconds)."""
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(**self.dsn, autocommit=True, connect_timeout=2)
            rows = self._conn.execute(
                "SELECT id, extract(epoch from updated_at) FROM jobs WHERE status = 'queued'").fetchall()
            return {r[0]: float(r[1]) for r in rows}
        except Exception:  # noqa: BLE001 - Postgres restarting: keep the last known set
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return None

    def messages(self, queued_since: dict[str, float]) -> set[str] | None:
        """Job ids with a message a worker would run (None: Redis does not answer)."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        try:
            found: set[str] = set()
            for key in client.scan_iter(match="*", count=500):
                name = key.decode(errors="replace")
                if name.split("\x06")[0] in ("cpu", "gpu") and client.type(key) == b"list":
                    for raw in client.lrange(key, 0, -1):
                        found.update(_job_ids(raw))
            reserved_at = dict(client.zrange("unacked_index", 0, -1, withscores=True))
            for tag, raw in client.hgetall("unacked").items():
                at = reserved_at.get(tag, 0.0)
                found.update(j for j in _job_ids(raw) if at >= queued_since.get(j, 0.0) - RESERVATION_SLACK_S)
            return found
        except redis.exceptions.RedisError:
            return None
        finally:
            client.close()

    # --- the loop -----------------------------------------------------------------------------

    def sample(self) -> None:
        queued = self._queued_jobs()
        if queued is not None:
            self._queued = queued
        with_message = self.messages(self._queued)
        now = time.monotonic()
        with self._lock:
            self.samples += 1
            for job_id in self._queued:
                waiting = with_message is None or job_id not in with_message
                if waiting and job_id not in self._open:
                    self._open[job_id] = Gap(job_id, now)
                elif not waiting and job_id in self._open:
                    self._close(job_id, now)
            for job_id in [j for j in self._open if j not in self._queued]:
                self._close(job_id, now)  # it left the queue (claimed, cancelled)

    def _close(self, job_id: str, now: float) -> None:
        gap = self._open.pop(job_id)
        gap.end = now
        self.gaps.append(gap)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.sample()

    def start(self) -> MessageWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()

    # --- figures ------------------------------------------------------------------------------

    def longest(self, since: float = 0.0, jobs: set[str] | None = None) -> Gap | None:
        """The longest gap that ended (or is still open) after ``since``, optionally for ``jobs`` only."""
        with self._lock:
            candidates = [g for g in [*self.gaps, *self._open.values()]
                          if (g.end is None or g.end >= since) and (jobs is None or g.job_id in jobs)]
        return max(candidates, key=lambda g: g.seconds, default=None)

    def open_gaps(self) -> list[Gap]:
        with self._lock:
            return list(self._open.values())
