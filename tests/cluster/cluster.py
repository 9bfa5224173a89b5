"""The cluster: seven hosts on one network, the way ``docs/OPERATIONS.md`` tells operators to deploy.

    db: Postgres    broker: Redis    s3: moto (S3 API)    api1, api2: ``lelp api``    w1, w2: ``lelp worker``

Every process of the service gets exactly the three shared URLs (``LELP_DATABASE_URL``,
``LELP_BROKER_URL``, ``LELP_ARTIFACT_URL=s3://...``) and a scratch directory of its host's
own (``HOME``, ``TMPDIR``, ``LELP_DATA_DIR``, caches): nothing else is shared, so a path that
only exists on one host's disk breaks here as it would in production. The processes are the
production entry points (``python -m worker.cli api|worker``), not test doubles.

The short timings of the cluster (``SETTINGS``): the claim timeout (``heartbeat_stale_s``)
is 15 s (a beat every 3.75 s; shorter ones flapped on 2 cores loaded 8x: a worker's pool
child can hold the GIL for seconds, and a late beat costs a requeue, harmless but slow),
every process sweeps each second (and reads the broker's queues every 2 s), and a job owed its
message is sent again after 3 s;
``queued_stale_s`` keeps its 900 s default, so no scenario passes by that fallback.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.network import Host, Network, make_network
from tests.cluster.services import (
    BUCKET,
    REPO_ROOT,
    S3_KEYS,
    PostgresServer,
    RedisServer,
    S3Server,
    wait_for,
)
from tests.cluster.watch import MessageWatch

SETTINGS = {
    "HEARTBEAT_STALE_S": 15,
    "SWEEP_INTERVAL_S": 1,
    "ENQUEUE_GRACE_S": 3,
    "BROKER_AUDIT_INTERVAL_S": 2,
    "JOB_MAX_ATTEMPTS": 6,
    "MAX_CONCURRENT_JOBS_PER_TENANT": 50,
}
API_PORT = 8000
STORE_URL = f"s3://{BUCKET}/store"


@dataclass
class Ledger:
    """What the scenarios did to the cluster, for the figures."""

    jobs: set[str] = field(default_factory=set)
    kills: list[str] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)
    restarts: Counter = field(default_factory=Counter)
    lines: dict[str, str] = field(default_factory=dict)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.network: Network
        self.network, self.network_note = make_network(root / "hosts")
        self.ledger = Ledger()
        self.key = ""
        add = self.network.add_host
        self.db_host, self.broker_host, self.s3_host = add("db"), add("broker"), add("s3")
        self.api_hosts = [add("api1"), add("api2")]
        self.worker_hosts = [add("w1"), add("w2")]
        self.postgres = PostgresServer(self.db_host)
        self.redis = RedisServer(self.broker_host)
        self.s3 = S3Server(self.s3_host)
        self.watch: MessageWatch | None = None
        self._api_ports: dict[str, int] = {}
        self._worker_starts: Counter = Counter()

    # --- starting ---------------------------------------------------------------------------------

    def start(self) -> Cluster:
        from app.db.migrate import upgrade
        from app.db.session import session_scope
        from app.security import create_api_key

        self.postgres.start()
        self.redis.start()
        self.s3.start()
        self.postgres.wait_ready()
        self.postgres.create_database()
        upgrade(self.db_url())
        self.redis.wait_ready()
        self.s3.wait_ready()
        self.s3.create_bucket()
        for host in self.api_hosts:
            self.start_api(host)
        for host in self.worker_hosts:
            self.start_worker(host)
        with session_scope(self.db_url()) as session:
            self.key = create_api_key(session, "cluster")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self.wait_ready, [*self.api_hosts, *self.worker_hosts]))
        address, port = self.network.endpoint(None, self.db_host, self.postgres.port)
        dsn = {"host": address, "port": port, "user": "postgres", "dbname": "lelp"}
        self.watch = MessageWatch(dsn, self.redis.url(None)).start()
        return self

    def env_for(self, host: Host) -> dict[str, str]:
        """The three shared URLs and this host's own directories; nothing else from the test's env."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LELP_", "AWS_"))}
        own = {name: host.dir / name for name in ("home", "tmp", "cache", "data", "mpl")}
        for path in own.values():
            path.mkdir(parents=True, exist_ok=True)
        env.update({
            "HOME": str(own["home"]), "TMPDIR": str(own["tmp"]), "XDG_CACHE_HOME": str(own["cache"]),
            "HF_HOME": str(own["cache"] / "huggingface"), "MPLCONFIGDIR": str(own["mpl"]),
            "LELP_DATA_DIR": str(own["data"]),
            "LELP_DATABASE_URL": self.postgres.url(host), "LELP_BROKER_URL": self.redis.url(host),
            "LELP_ARTIFACT_URL": STORE_URL, "AWS_ENDPOINT_URL": self.s3.url(host), **S3_KEYS,
            "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
        })
        env.update({f"LELP_{k}": str(v) for k, v in SETTINGS.items()})
        return env

    def log_of(self, host: Host) -> Path:
        return host.dir / f"{host.name}.log"

    def api_port(self, host: Host) -> int:
        """8000 on every API host's own address; a free port of its own on loopback."""
        if self.network.mode == "netns":
            return API_PORT
        if host.name not in self._api_ports:
            self._api_ports[host.name] = self.network.service_port(API_PORT)
        return self._api_ports[host.name]

    def start_api(self, host: Host) -> None:
        command = [sys.executable, "-m", "worker.cli", "api", "--host", host.address, "--port",
                   str(self.api_port(host))]
        host.spawn(command, self.env_for(host), self.log_of(host))

    def start_worker(self, host: Host) -> None:
        command = [sys.executable, "-m", "worker.cli", "worker", "--queues", "cpu", "--concurrency", "1",
                   "--name", f"{host.name}@%h"]
        self._worker_starts[host.name] += 1
        host.spawn(command, self.env_for(host), self.log_of(host))

    def wait_ready(self, host: Host, timeout_s: float = 180) -> None:
        what = lambda: f"{host.name} ready:\n{self.log_tail(host)}"  # noqa: E731
        if host in self.api_hosts:
            import httpx

            url = self.api_url(host)
            wait_for(lambda: httpx.get(f"{url}/readyz", timeout=3).status_code == 200, timeout_s, what, poll_s=0.25)
        else:  # each start of Celery logs "<node> ready." once
            wait_for(lambda: self.log_of(host).read_text(errors="replace").count(" ready.")
                     >= self._worker_starts[host.name], timeout_s, what, poll_s=0.25)

    def log_tail(self, host: Host, chars: int = 3000) -> str:
        path = self.log_of(host)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def logs(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {h.name} ---\n{self.log_tail(h, chars)}" for h in [*self.api_hosts, *self.worker_hosts])

    # --- what the test dials --------------------------------------------------------------------------

    def api_url(self, host: Host) -> str:
        address, port = self.network.endpoint(None, host, self.api_port(host))
        return f"http://{address}:{port}"

    def client(self, host: Host, timeout: float = 60):  # noqa: ANN201 - app.client.http.LelpClient
        from app.client.http import LelpClient

        return LelpClient(self.api_url(host), self.key, timeout=timeout)

    def db_url(self) -> str:
        return self.postgres.url(None)

    # --- faults ----------------------------------------------------------------------------------------

    def kill(self, host: Host) -> int:
        killed = host.kill()
        self.ledger.kills.append(host.name)
        return killed

    def cut(self, host: Host) -> None:
        self.network.cut(host)
        self.ledger.cuts.append(host.name)

    def restore(self, host: Host) -> None:
        self.network.restore(host)

    def host_of(self, worker_tag: str) -> Host | None:
        """The host of a ``host/pid`` tag (a ``started`` event's worker, a ``requeued`` event's sweeper)."""
        name, _, pid = worker_tag.rpartition("/")
        by_name = next((h for h in self.network.hosts.values() if name == f"lelp-{h.name}"), None)
        return by_name or self.network.host_of_pid(int(pid))

    def heal(self) -> None:
        """Every link up and every API and worker host running (after a scenario that failed midway)."""
        for host in [*self.api_hosts, *self.worker_hosts]:
            self.network.restore(host)
            if not any(p.poll() is None for p in host.processes):
                (self.start_api if host in self.api_hosts else self.start_worker)(host)
                self.ledger.restarts[host.name] += 1
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self.wait_ready, [*self.api_hosts, *self.worker_hosts]))

    # --- reading the database directly (works while every API is down) ---------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        from app.db.models import Job
        from app.db.session import session_scope

        with session_scope(self.db_url()) as session:
            job = session.get(Job, job_id)
            assert job is not None, job_id
            return {"status": job.status, "attempts": job.attempts, "progress": dict(job.progress or {}),
                    "error": job.error, "model_id": job.model_id, "claim_token": job.claim_token,
                    "checkpoint_uri": job.checkpoint_uri}

    def job_by_key(self, key: str) -> str | None:
        """The id of the job submitted with ``Idempotency-Key: key``, once its row is committed."""
        import sqlalchemy as sa

        from app.db.models import Job
        from app.db.session import session_scope

        with session_scope(self.db_url()) as session:
            return session.scalar(sa.select(Job.id).where(Job.idempotency_key == key))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        from app.db.models import JobEvent
        from app.db.session import session_scope

        with session_scope(self.db_url()) as session:
            rows = session.scalars(sa.select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
            return [{"at": e.at, "type": e.type, "message": e.message, "data": dict(e.data or {})} for e in rows]

    def models(self, job_ids: list[str]) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        from app.db.models import Model
        from app.db.session import session_scope

        with session_scope(self.db_url()) as session:
            rows = session.scalars(sa.select(Model).where(Model.job_id.in_(job_ids)))
            return [{"id": m.id, "job_id": m.job_id, "uri": m.uri, "size_bytes": m.size_bytes} for m in rows]

    def training(self, job_id: str, min_epoch: int, after_attempt: int = 0) -> str | None:
        """``host/pid`` of the delivery (past ``after_attempt``) training ``job_id`` at epoch >= ``min_epoch``."""
        row = self.job(job_id)
        assert row["status"] in ("queued", "running"), f"job {job_id} ended early: {row}\n{self.logs()}"
        if row["status"] != "running" or row["attempts"] <= after_attempt:
            return None
        progress = row["progress"]
        if progress.get("stage") != "train" or (progress.get("epoch") or 0) < min_epoch:
            return None
        started = [e for e in self.events(job_id) if e["type"] == "started"]
        if not started or started[-1]["data"].get("attempt") != row["attempts"]:
            return None
        stages = [e for e in self.events(job_id) if e["type"] == "stage" and e["at"] >= started[-1]["at"]]
        if not any(e["data"].get("stage") == "train" for e in stages):
            return None  # the progress row is the killed delivery's; this one has not trained yet
        return started[-1]["data"].get("worker")

    # --- the store ------------------------------------------------------------------------------------

    def store_files(self, prefix: str) -> dict[str, int]:
        """``{path under prefix: size}`` of the objects in the bucket, read from the S3 server directly."""
        fs = self.s3.filesystem()
        base = f"{BUCKET}/store/{prefix.strip('/')}"
        if not fs.exists(base):
            return {}
        return {path[len(base) + 1:]: int(info["size"]) for path, info in fs.find(base, detail=True).items()}

    def store_hashes(self, prefix: str) -> dict[str, str]:
        import hashlib

        fs = self.s3.filesystem()
        base = f"{BUCKET}/store/{prefix.strip('/')}"
        return {rel: hashlib.sha256(fs.cat_file(f"{base}/{rel}")).hexdigest() for rel in self.store_files(prefix)}

    # --- the worker logs: who ran what ---------------------------------------------------------------

    def outcomes(self, job_id: str) -> list[tuple[str, str]]:
        """(host, what) of every delivery that ended in the worker logs: ``published`` (it ran the job to
        completion and committed its model), ``claim_lost`` (it found another delivery held the job) or
        ``crashed`` (it gave the delivery up on an error, e.g. the store unreachable while cut off)."""
        found = []
        for host in self.worker_hosts:
            text = self.log_of(host).read_text(errors="replace") if self.log_of(host).exists() else ""
            found += [(host.name, "published") for _ in re.findall(rf"job {job_id} published model", text)]
            found += [(host.name, "claim_lost") for _ in re.findall(rf"job {job_id} -> claim_lost", text)]
            found += [(host.name, "crashed") for _ in re.findall(rf"job {job_id} crashed", text)]
        return found

    def completions(self, job_id: str) -> list[str]:
        """The hosts whose delivery ran ``job_id`` to completion (one, when nothing ran twice)."""
        return [host for host, what in self.outcomes(job_id) if what == "published"]

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        try:
            for host in [*self.worker_hosts, *self.api_hosts]:
                host.kill()
            self.postgres.close()
            self.redis.kill()
        finally:
            self.network.close()


class Background:
    """Runs a call in a thread and keeps what it returned or raised (a request a kill interrupts)."""

    def __init__(self, call) -> None:  # noqa: ANN001
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call) -> None:  # noqa: ANN001
        try:
            self.result = call()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def now() -> float:
    return time.monotonic()
