"""The shared services of the cluster, each a real server started by the test on its own host.

- ``PostgresServer``: a private instance (``initdb`` + ``postgres`` from /usr/lib/postgresql/*/bin),
  not a database on the machine's shared server, because a scenario restarts it (and no test
  may restart the server other engineers' runs use). Postgres refuses to run as root, so
  under root it runs as the ``postgres`` user (the Debian package creates it). Its data is
  on a tmpfs-like scratch directory with ``fsync=off``: a test, not a durability drill.
- ``RedisServer``: ``redis-server`` without persistence, so a restart loses every message,
  as a broker crash without a disk would.
- ``S3Server``: moto's standalone server (``python -m moto.server``), an S3 API on a port.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cluster.network import Host

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "lelp-cluster"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "cluster", "AWS_SECRET_ACCESS_KEY": "cluster", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str | Callable[[], str],
             poll_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - a server still starting: ask again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(poll_s)


def _alive(process: subprocess.Popen | None, log: Path) -> None:
    """A server that exited (a port already taken...) must fail the test, never leave it talking to another one."""
    if process is None or process.poll() is not None:
        raise AssertionError(f"the server exited:\n{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")


class PostgresServer:
    """A private PostgreSQL on ``host``; ``restart`` is a crash (immediate shutdown) and a start."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.port = host.network.service_port(5432)
        self.bin = _pg_bin()
        self.user = "postgres" if os.geteuid() == 0 else None
        # Not under pytest's 0700 temp root: the postgres user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="lelp-cluster-pg-"))
        self.data = self.dir / "data"
        self.log = host.dir / "postgres.log"
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._as_user([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                       "--no-sync", "-E", "UTF8"], check=True)
        with (self.data / "pg_hba.conf").open("a") as hba:  # the cluster's private network, no password
            hba.write("host all all 0.0.0.0/0 trust\n")

    def _command(self, args: list[str]) -> list[str]:
        # setpriv execs in place (runuser would fork and stand between the test and the postmaster)
        return ["setpriv", "--reuid", self.user, "--regid", self.user, "--init-groups", *args] if self.user else args

    def _as_user(self, args: list[str], check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(self._command(args), capture_output=True, text=True, check=check)

    def start(self) -> PostgresServer:
        # idle_in_transaction_session_timeout / tcp keepalives: a client cut off mid-transaction
        # must not hold a job's row lock for long (see docs/OPERATIONS.md).
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-h", self.host.address, "-p", str(self.port),
                "-k", str(self.dir), "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
                "-c", "max_connections=200", "-c", "idle_in_transaction_session_timeout=5s",
                "-c", "tcp_keepalives_idle=5", "-c", "tcp_keepalives_interval=2", "-c", "tcp_keepalives_count=3"]
        self.process = self.host.spawn(self._command(args), dict(os.environ), self.log)
        return self

    def url(self, client: Host | None, database: str = "lelp") -> str:
        address, port = self.host.network.endpoint(client, self.host, self.port)
        return f"postgresql+psycopg://postgres@{address}:{port}/{database}"

    def wait_ready(self, timeout_s: float = 60) -> None:
        import psycopg

        def ready() -> bool:
            _alive(self.process, self.log)
            address, port = self.host.network.endpoint(None, self.host, self.port)
            with psycopg.connect(host=address, port=port, user="postgres", dbname="postgres", connect_timeout=2):
                return True

        wait_for(ready, timeout_s, lambda: f"postgres on {self.host.name}:\n{self.log.read_text()[-2000:]}")

    def create_database(self, name: str = "lelp") -> None:
        import psycopg

        address, port = self.host.network.endpoint(None, self.host, self.port)
        with psycopg.connect(host=address, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def crash(self) -> None:
        """SIGQUIT: PostgreSQL's immediate shutdown (no checkpoint; crash recovery at the next start)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            postmaster = self.process.pid
        os.kill(postmaster, signal.SIGQUIT)
        self.process.wait(timeout=30)

    def restart(self, down_s: float = 0.0) -> None:
        self.crash()
        time.sleep(down_s)
        self.start().wait_ready()
        self.restarts += 1

    def close(self) -> None:
        self.crash()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.port = host.network.service_port(6379)
        self.log = host.dir / "redis.log"
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> RedisServer:
        command = ["redis-server", "--bind", self.host.address, "--port", str(self.port), "--save", "",
                   "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.host.dir)]
        self.process = self.host.spawn(command, dict(os.environ), self.log)
        return self

    def url(self, client: Host | None, db: int = 0) -> str:
        address, port = self.host.network.endpoint(client, self.host, self.port)
        return f"redis://{address}:{port}/{db}"

    def client(self):  # noqa: ANN201 - redis.Redis
        import redis

        return redis.Redis.from_url(self.url(None), socket_connect_timeout=2, socket_timeout=5)

    def wait_ready(self, timeout_s: float = 30) -> None:
        client = self.client()
        try:
            wait_for(lambda: _alive(self.process, self.log) or client.ping(), timeout_s, f"redis on {self.host.name}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: every queued and unacknowledged message is gone (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start().wait_ready()
        self.restarts += 1


class S3Server:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.port = host.network.service_port(9000)
        self.log = host.dir / "s3.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> S3Server:
        command = [sys.executable, "-m", "moto.server", "-H", self.host.address, "-p", str(self.port)]
        self.process = self.host.spawn(command, dict(os.environ), self.log)
        return self

    def url(self, client: Host | None) -> str:
        address, port = self.host.network.endpoint(client, self.host, self.port)
        return f"http://{address}:{port}"

    def filesystem(self):  # noqa: ANN201 - s3fs.S3FileSystem, seen from the test (no listing cache)
        if getattr(self, "_fs", None) is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(key=S3_KEYS["AWS_ACCESS_KEY_ID"], secret=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                                         endpoint_url=self.url(None), skip_instance_cache=True,
                                         use_listings_cache=False)
        return self._fs

    def wait_ready(self, timeout_s: float = 60) -> None:
        import httpx

        wait_for(lambda: _alive(self.process, self.log) or httpx.get(self.url(None), timeout=2).status_code < 500,
                 timeout_s,
                 lambda: f"moto on {self.host.name}:\n{self.log.read_text()[-2000:]}", poll_s=0.25)

    def create_bucket(self) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.url(None), region_name="us-east-1",
                     aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
