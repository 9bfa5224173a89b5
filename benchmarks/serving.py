"""Predict throughput and latency over HTTP: our micro-batched endpoint vs a naive one.

Three servers, each one uvicorn process on loopback, the same model in (a) and (b):
(a) ours: ``POST /v1/models/{id}/predict`` of the real API (auth, validation, LRU cache,
    micro-batcher, inference in a thread);
(b) naive: a bare FastAPI app that runs one unbatched ``predict`` per request;
(c) trivial: a bare FastAPI POST returning a constant, the ceiling of the HTTP stack.
Clients: 1, 8 and 32 concurrent ``httpx.AsyncClient`` loops, each request one sentence,
bounded by ``--seconds`` and ``--max-requests`` per cell. One run; the load generator
shares the machine's cores with the server (say so when quoting the numbers).

    python benchmarks/serving.py                          # builds a tiny ngram student
    python benchmarks/serving.py --model path/to/student  # or any artifact / teacher dir
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SENTENCES = ["a lovely warm film with a great cast", "the plot was dull and the acting awful",
             "quite a good story", "a sad and grim scene", "the team won the match"]


try:  # at module level: FastAPI resolves the string annotations of the endpoints here
    from pydantic import BaseModel

    class Body(BaseModel):
        inputs: list[str]
except ImportError:  # pragma: no cover
    pass


# --- the two bare servers (run in a subprocess: ``serving.py --serve naive|trivial``) ----------------


def bare_app(kind: str, model_dir: str | None):
    """A minimal FastAPI app: ``naive`` scores each request alone, ``trivial`` returns a constant."""
    from fastapi import FastAPI

    app = FastAPI()
    if kind == "trivial":
        @app.post("/predict")
        async def trivial(body: Body) -> dict:
            return {"predictions": [{"label": "x", "score": 1.0} for _ in body.inputs]}
        return app

    from lelp.artifacts import load_predictor

    predictor = load_predictor(model_dir)

    @app.post("/predict")
    def naive(body: Body) -> dict:  # a sync endpoint: FastAPI runs it in its thread pool
        return {"predictions": predictor.predict(body.inputs)}

    return app


# --- our API, with the model registered in a fresh embedded database ---------------------------------


def register_model(data_dir: Path, model_dir: Path) -> tuple[str, str]:
    """Put ``model_dir`` in a fresh store and database as a model row; returns (model_id, api_key)."""
    os.environ["LELP_DATA_DIR"] = str(data_dir)
    from app.db.base import new_id, utcnow
    from app.db.migrate import upgrade
    from app.db.models import Job, Model
    from app.db.session import session_scope
    from app.security import create_api_key
    from app.settings import get_settings
    from app.storage import ArtifactStore
    from lelp.artifacts import load_predictor

    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        key = create_api_key(session, "bench")
    from app.db.repositories import get_or_create_tenant

    model_id, job_id = new_id("mdl"), new_id("job")
    ArtifactStore(settings.artifact_url).put_dir(model_dir, f"models/{model_id}")
    labels = list(load_predictor(model_dir).labels)
    with session_scope(settings.database_url) as session:
        tenant = get_or_create_tenant(session, "bench")
        now = utcnow()
        session.add(Job(id=job_id, tenant_id=tenant.id, method="lelp", student={"architecture": "ngram"},
                        device="cpu", hyperparameters={}, status="succeeded", progress={}, attempts=1,
                        cancel_requested=False, created_at=now, updated_at=now, finished_at=now))
        session.flush()
        session.add(Model(id=model_id, tenant_id=tenant.id, job_id=job_id, teacher_id=None, method="lelp",
                          architecture="ngram", labels=labels, parameters=None, size_bytes=None, metrics={},
                          uri=f"models/{model_id}", created_at=now))
    return model_id, key


# --- processes and load -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen:
    import httpx

    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server {command} did not start:\n{log.read_text()[-2000:]}")


async def load(url: str, headers: dict[str, str], clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` loops posting one sentence each, until the time or count bound; latency in ms."""
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = float("inf")  # set after the warm-up request
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def loop(client: httpx.AsyncClient, i: int) -> None:
        nonlocal errors
        n = i
        while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
            body = {"inputs": [SENTENCES[n % len(SENTENCES)]]}
            n += clients
            t0 = time.perf_counter()
            response = await client.post(url, json=body, headers=headers)
            if response.status_code == 200:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await client.post(url, json={"inputs": SENTENCES[:1]}, headers=headers)  # warm: load the model
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(loop(client, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"rps": len(latencies) / elapsed, "p50": pct(0.5), "p99": pct(0.99), "n": len(latencies),
            "errors": errors}


def build_student(work: Path) -> Path:
    """A tiny random BERT teacher and an ngram student distilled from it (seconds on a CPU)."""
    from lelp.pipeline import DistillConfig, distill
    from tests.tiny import make_text_rows, make_tiny_teacher, write_csv

    teacher = make_tiny_teacher(work / "teacher")
    train = write_csv(work / "train.csv", make_text_rows(400, seed=1))
    result = distill(DistillConfig(teacher_dir=str(teacher), train_path=str(train), subclasses=2, epochs=1,
                                   device="cpu"), work / "student")
    return Path(result.artifact_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="student artifact or teacher directory (default: build one)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=4.0, help="time bound per cell")
    parser.add_argument("--max-requests", type=int, default=5000, help="count bound per cell")
    parser.add_argument("--serve", choices=["naive", "trivial"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:  # child mode: one of the bare servers
        import uvicorn

        uvicorn.run(bare_app(args.serve, str(args.model) if args.model else None), host="127.0.0.1",
                    port=args.port, log_level="warning", access_log=False)
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="lelp-serving-bench-"))
    processes: list[subprocess.Popen] = []
    try:
        model_dir = args.model or build_student(work / "build")
        model_id, key = register_model(work / "data", model_dir)
        env = dict(os.environ, LELP_DATA_DIR=str(work / "data"), PYTHONPATH=str(REPO_ROOT))
        ports = {name: free_port() for name in ("ours", "naive", "trivial")}
        processes.append(start([sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(ports["ours"]), "--log-level", "warning",
                                "--no-access-log"], env, f"http://127.0.0.1:{ports['ours']}/healthz",
                               work / "ours.log"))
        for kind in ("naive", "trivial"):
            processes.append(start([sys.executable, __file__, "--serve", kind, "--port", str(ports[kind]),
                                    *(["--model", str(model_dir)] if kind == "naive" else [])], env,
                                   f"http://127.0.0.1:{ports[kind]}/docs", work / f"{kind}.log"))
        targets = {
            "ours (micro-batched)": (f"http://127.0.0.1:{ports['ours']}/v1/models/{model_id}/predict",
                                     {"Authorization": f"Bearer {key}"}),
            "naive (1 forward/request)": (f"http://127.0.0.1:{ports['naive']}/predict", {}),
            "trivial (constant)": (f"http://127.0.0.1:{ports['trivial']}/predict", {}),
        }
        results: dict[tuple[str, int], dict] = {}
        levels = [int(c) for c in args.clients.split(",")]
        for clients in levels:
            for name, (url, headers) in targets.items():
                results[name, clients] = asyncio.run(load(url, headers, clients, args.seconds, args.max_requests))
                r = results[name, clients]
                print(f"  {name:28s} clients={clients:3d}  {r['rps']:8.0f} req/s  p50 {r['p50']:.1f} ms  "
                      f"p99 {r['p99']:.1f} ms  n={r['n']} errors={r['errors']}", file=sys.stderr, flush=True)
        print(f"\nmodel: {model_dir}  ({os.cpu_count()} CPU cores shared by server and load generator; "
              f"{args.seconds:.0f} s or {args.max_requests} requests per cell; one sentence per request)\n")
        print("| endpoint | clients | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
        for clients in levels:
            for name in targets:
                r = results[name, clients]
                print(f"| {name} | {clients} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |")
        print("\n| clients | ours / naive | ours / trivial |\n|---|---|---|")
        for clients in levels:
            ours = results["ours (micro-batched)", clients]["rps"]
            naive = results["naive (1 forward/request)", clients]["rps"]
            trivial = results["trivial (constant)", clients]["rps"]
            print(f"| {clients} | {ours / max(naive, 1e-9):.2f}x | {100 * ours / max(trivial, 1e-9):.0f}% |")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
