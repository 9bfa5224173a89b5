"""The server's CPU per predict request, in one process: our endpoint vs the constant one.

``serving.py`` measures requests/s over sockets, with its load generator on the same two cores as
the servers: on a shared machine its ratios swung from 18% to 92% between runs. This script
drives both ASGI apps directly (no sockets, no client: a request is a scope, a body and a send
callable) and reads the process's CPU time, so what it reports is the work the server does per
request, which is what bounds its throughput when the cores are busy. Same models as
``serving.py`` (tiny ``cnn`` and ``ngram`` students served on their ONNX packages, as a job
publishes them); the constant endpoint is ``serving.py``'s bare FastAPI app. Rounds alternate
ours and the constant endpoint; the table gives medians.

    python benchmarks/serving_cpu.py                       # cnn and ngram, 1 and 32 clients
    python benchmarks/serving_cpu.py --models ngram --requests 6400 --rounds 5

"share" is the constant endpoint's CPU per request over ours: the fraction of its throughput we
would serve if the server's CPU were the only limit (``serving.py``'s ``ours / trivial``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import serving  # noqa: E402  (this folder's module: the models, their registration, the constant app)

BODY = json.dumps({"inputs": ["a lovely warm film with a great cast"]}).encode()


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}


async def drive(app, path: str, headers: dict[str, str], requests: int, clients: int) -> list[int]:  # noqa: ANN001
    """``requests`` POSTs of BODY by ``clients`` concurrent callers, one after another each; the statuses."""
    raw = [(b"host", b"bench"), (b"content-type", b"application/json"),
           (b"content-length", str(len(BODY)).encode()),
           *((key.lower().encode(), value.encode()) for key, value in headers.items())]
    statuses: list[int] = []

    async def one() -> None:
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.Event().wait()  # a client that stays connected
            raise AssertionError

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(_scope(path, raw), receive, send)

    async def caller(n: int) -> None:
        for _ in range(n):
            await one()

    await asyncio.gather(*(caller(requests // clients) for _ in range(clients)))
    return statuses


async def cpu_per_request(target: tuple, requests: int, clients: int) -> float:
    """Microseconds of this process's CPU per request (the model's thread included)."""
    start = time.process_time()
    statuses = await drive(*target, requests, clients)
    elapsed = time.process_time() - start
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))} from {target[1]}")
    return 1e6 * elapsed / len(statuses)


async def measure(models: list[str], levels: list[int], requests: int, rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="lelp-serving-cpu-"))
    built = {kind: serving.build_student(work / kind, kind) for kind in models}
    model_ids, key = serving.register_models(work / "data", built)
    from app.main import create_app

    ours_app, constant_app = create_app(), serving.bare_app("trivial", None)
    results: dict[tuple[str, str, int], list[float]] = {}
    async with ours_app.router.lifespan_context(ours_app):
        targets = {"constant": (constant_app, "/predict", {})}
        for kind in models:
            targets[kind] = (ours_app, f"/v1/models/{model_ids[kind]}/predict", {"Authorization": f"Bearer {key}"})
        for target in targets.values():  # load the models, warm the caches
            await drive(*target, 256, 8)
        for _ in range(rounds):
            for clients in levels:
                for name, target in targets.items():
                    us = await cpu_per_request(target, requests, clients)
                    results.setdefault((name, "ours" if name != "constant" else "constant", clients), []).append(us)
                    print(f"  {name:8s} clients={clients:2d} {us:7.0f} us/request", file=sys.stderr, flush=True)
    return results


def print_table(results: dict, models: list[str], levels: list[int], requests: int, rounds: int) -> None:
    load = os.getloadavg()[0]
    print(f"\nServer CPU per request, in process ({requests} one-sentence requests per cell, {rounds} rounds "
          f"alternating, medians; load average {load:.1f}; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})\n")
    print("| model | clients | ours us/request | constant us/request | share (constant / ours) |")
    print("|---|---|---|---|---|")
    for kind in models:
        for clients in levels:
            ours = statistics.median(results[kind, "ours", clients])
            constant = statistics.median(results["constant", "constant", clients])
            print(f"| {kind} | {clients} | {ours:,.0f} | {constant:,.0f} | {100 * constant / ours:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn,ngram", help="students to serve: cnn, ngram")
    parser.add_argument("--clients", default="1,32", help="concurrent callers per cell")
    parser.add_argument("--requests", type=int, default=3200, help="requests per cell")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are reported)")
    args = parser.parse_args()
    models, levels = args.models.split(","), [int(c) for c in args.clients.split(",")]
    results = asyncio.run(measure(models, levels, args.requests, args.rounds))
    print_table(results, models, levels, args.requests, args.rounds)


if __name__ == "__main__":
    main()
