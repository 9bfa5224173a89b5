"""Throughput that grows with workers: one batch of small identical jobs on 1 worker, then on 2.

The production code path on one machine: a private ``redis-server`` (free port, no
persistence) as the broker, a fresh database on the Postgres at 127.0.0.1:5432 (dropped at
the end), a local artifact store in a temp directory, one API process (``lelp api``) and
``lelp worker --concurrency 1`` processes, each pinned to one torch/OMP thread. For each
worker count the workers are started fresh and warmed up (one untimed job each: torch
imported, the teacher's features cached), then ``--jobs`` identical jobs are submitted at
once and timed from the first submit to the last job's end.

    python benchmarks/workers.py                   # 12 jobs per run, 2 rounds: ~6-8 min on 2 idle cores
    python benchmarks/workers.py --jobs 6 --repeat 1   # a quicker look

Each round runs every worker count (alternating the order), and the summary keeps the median
jobs per minute of each. Prints every run (wall time, jobs per minute, mean job time, the
workers' busy share) with the machine's load average before and after it: on a shared
machine the ratio says as much about the neighbours as about the service.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG_ADMIN_URL = os.environ.get("LELP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Deployment:
    def __init__(self, work: Path) -> None:
        import psycopg

        self.work = work
        self.procs: list[subprocess.Popen] = []
        self.db = f"lelp_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db}"')
        self.db_url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + self.db
        self.redis_port = free_port()
        self.env = {**os.environ, "LELP_DATA_DIR": str(work / "data"), "LELP_DATABASE_URL": self.db_url,
                    "LELP_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "LELP_ARTIFACT_URL": str(work / "store"), "LELP_MAX_CONCURRENT_JOBS_PER_TENANT": "1000",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)

    def spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> str:
        import httpx
        import redis

        from app.db.migrate import upgrade

        self.spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"])
        wait_for(lambda: redis.Redis(port=self.redis_port).ping(), 30, "redis")
        upgrade(self.db_url)
        port = free_port()
        self.spawn("api", [sys.executable, "-m", "worker.cli", "api", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, 120, "the API")
        return url

    def start_workers(self, n: int, tag: str) -> list[subprocess.Popen]:
        workers = [self.spawn(f"worker-{tag}-{i}", [sys.executable, "-m", "worker.cli", "worker", "--queues", "cpu",
                                                    "--concurrency", "1", "--name", f"bench{tag}{i}@%h"])
                   for i in range(n)]
        for i in range(n):
            log = self.logs / f"worker-{tag}-{i}.log"
            wait_for(lambda log=log: " ready." in log.read_text(errors="replace"), 180, f"worker {tag}-{i}")
        return workers

    def stop_workers(self, workers: list[subprocess.Popen]) -> None:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)

    def close(self) -> None:
        import psycopg

        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def run_batch(client, resources: dict, jobs: int, hyperparameters: dict, student: str) -> tuple[float, float]:  # noqa: ANN001
    """Submit ``jobs`` at once, wait for all; (wall seconds, sum of the jobs' own run seconds)."""
    from datetime import datetime

    start = time.monotonic()
    ids = [client.create_job(resources["teacher"], resources["train"], method="kd", student=student, device="cpu",
                             hyperparameters=hyperparameters)["id"] for _ in range(jobs)]
    finals = [client.wait_job(job_id, poll=0.2, timeout=3600) for job_id in ids]
    wall = time.monotonic() - start
    bad = [f for f in finals if f["status"] != "succeeded"]
    if bad:
        raise SystemExit(f"{len(bad)} jobs did not succeed: {bad[0]}")
    busy = sum((datetime.fromisoformat(f["finished_at"]) - datetime.fromisoformat(f["started_at"])).total_seconds()
               for f in finals)
    return wall, busy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12, help="jobs in each timed batch")
    parser.add_argument("--rows", type=int, default=400, help="training rows of each job")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--student", default="static")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2,3")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds; each round runs every worker count, so load drifts hit all alike (median kept)")
    args = parser.parse_args()

    from app.client.http import LelpClient
    from app.db.session import session_scope
    from app.security import create_api_key
    from tests.tiny import make_text_rows, make_tiny_teacher, write_csv

    work = Path(tempfile.mkdtemp(prefix="lelp-bench-workers-"))
    deployment = Deployment(work)
    hyperparameters = {"epochs": args.epochs, "batch_size": 16, "seed": 0}
    rows = []
    try:
        url = deployment.start()
        with session_scope(deployment.db_url) as session:
            key = create_api_key(session, "bench")
        client = LelpClient(url, key, timeout=120)
        teacher = client.upload_teacher(make_tiny_teacher(work / "teacher"))
        train = client.upload_dataset(write_csv(work / "train.csv", make_text_rows(args.rows, seed=7)))
        resources = {"teacher": teacher["id"], "train": train["id"]}
        counts = [int(n) for n in args.workers.split(",")]
        for round_ in range(args.repeat):
            for n in counts if round_ % 2 == 0 else counts[::-1]:
                workers = deployment.start_workers(n, f"{n}r{round_}")
                run_batch(client, resources, n, hyperparameters, args.student)  # warm-up: torch in, features cached
                before = load()
                wall, busy = run_batch(client, resources, args.jobs, hyperparameters, args.student)
                rows.append({"workers": n, "round": round_ + 1, "wall": wall, "per_min": args.jobs / wall * 60,
                             "busy": busy / (n * wall), "job_s": busy / args.jobs, "load_before": before,
                             "load_after": load()})
                deployment.stop_workers(workers)
                print(f"round {round_ + 1}, {n} worker(s): {args.jobs} jobs in {wall:.1f} s", flush=True)
        client.close()
    finally:
        deployment.close()
        shutil.rmtree(work, ignore_errors=True)

    median = {n: statistics.median(r["per_min"] for r in rows if r["workers"] == n) for n in counts}
    base = median[counts[0]]
    print(f"\n{args.jobs} identical jobs ({args.student} student of the tiny BERT teacher, {args.rows} rows, "
          f"{args.epochs} epochs, method kd) per run; {os.cpu_count()} CPUs; one thread per worker\n")
    print("| workers | round | wall (s) | jobs / min | mean job (s) | workers busy | load avg before | "
          "load avg after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['round']} | {r['wall']:.1f} | {r['per_min']:.1f} | {r['job_s']:.1f} | "
              f"{r['busy']:.0%} | {r['load_before']} | {r['load_after']} |")
    print("\n| workers | jobs / min (median) | ratio to " + f"{counts[0]} worker |")
    print("|---|---|---|")
    for n in counts:
        print(f"| {n} | {median[n]:.1f} | {median[n] / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
