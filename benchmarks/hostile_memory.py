"""The API's memory across issue 14's hostile sweep, against a live embedded server (``lelp serve``).

Starts ``lelp serve`` (API + one Celery worker, SQLite, local broker) in a fresh data
directory, waits until it answers, and samples the API process's RSS (``/proc/PID/status``)
every 20 ms while it posts every hostile input of ``tests/hostile_models.py`` (18 model
archives, 100k-deep JSON bodies, URIs whose fsspec backend is missing, percent-encoded
``..``), then a valid teacher and ``GET /v1/teachers``. Prints one line per input (status,
code, time) and the idle / peak / final RSS. Done-when of issue 14: peak - idle <= 200 MB.

    python benchmarks/hostile_memory.py            # ~1 min on 2 busy cores
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hostile_models import CASES, JSON_CASES, build_case, tar_gz  # noqa: E402
from tests.tiny import make_tiny_teacher  # noqa: E402

MB = 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="lelp-hostile-"))
    teacher = make_tiny_teacher(work / "teacher")
    port = free_port()
    env = {**os.environ, "LELP_DATA_DIR": str(work / "data"), "PYTHONPATH": str(REPO),
           "LELP_ALLOWED_URI_ROOTS": f"s3://bucket/models,gcs://bucket/data,http://files.local/models,{work}",
           "RUST_BACKTRACE": "0", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("LELP_DATABASE_URL", "LELP_BROKER_URL", "LELP_ARTIFACT_URL"):
        env.pop(name, None)
    server = subprocess.Popen([sys.executable, "-m", "worker.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("lelp serve did not start")
            time.sleep(0.3)
        key = (work / "data" / "api_key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        client = httpx.Client(base_url=base, headers=auth, timeout=120)
        client.get("/v1/teachers")  # first request: lazy imports done before the idle figure
        time.sleep(1)
        idle = rss(server.pid)
        sampler = Sampler(server.pid)
        sampler.start()
        rows: list[tuple[str, int, str, float]] = []

        def record(name: str, response: httpx.Response, started: float) -> None:
            code = response.json().get("error", {}).get("code", "-") if response.content else "-"
            rows.append((name, response.status_code, code, time.perf_counter() - started))

        for name in CASES:
            archive = build_case(name, teacher, work / "cases")
            started = time.perf_counter()
            record(name, client.post("/v1/teachers", files={"file": ("m.tar.gz", archive, "application/gzip")}),
                   started)
        for name, path, body in JSON_CASES:
            started = time.perf_counter()
            record(name, client.post(path, content=body, headers={"Content-Type": "application/json"}), started)
        for name, path, uri in (("uri_s3_without_s3fs", "/v1/teachers", "s3://bucket/models/m"),
                                ("uri_gcs_without_gcsfs", "/v1/datasets", "gcs://bucket/data/train.csv"),
                                ("uri_http_without_aiohttp", "/v1/teachers", "http://files.local/models/m"),
                                ("uri_http_percent_dotdot", "/v1/teachers", "http://files.local/models/%2e%2e/x"),
                                ("uri_s3_double_encoded_dotdot", "/v1/teachers", "s3://bucket/models/%252e%252e/x")):
            started = time.perf_counter()
            record(name, client.post(path, json={"uri": uri}), started)
        started = time.perf_counter()
        record("valid_teacher", client.post("/v1/teachers", files={"file": ("t.tar.gz", tar_gz(teacher),
                                                                            "application/gzip")}), started)
        started = time.perf_counter()
        listing = client.get("/v1/teachers")
        record(f"list_teachers ({len(listing.content):,} bytes)", listing, started)
        time.sleep(0.5)
        sampler.stop.set()
        sampler.join()
        final = rss(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
    print("| input | status | code | time |\n|---|---|---|---|")
    for name, status, code, elapsed in rows:
        print(f"| {name} | {status} | {code} | {elapsed * 1000:.0f} ms |")
    five = sum(1 for _, status, _, _ in rows if status >= 500)
    print(f"\ninputs {len(rows) - 2} hostile + 2 valid / 5xx {five} / API RSS idle {idle / MB:.0f} MB, "
          f"peak {sampler.peak / MB:.0f} MB (+{(sampler.peak - idle) / MB:.0f} MB), final {final / MB:.0f} MB "
          f"(+{(final - idle) / MB:.0f} MB)")
    ok = five == 0 and sampler.peak - idle <= 200 * MB and all(
        400 <= status < 500 for name, status, _, _ in rows[:-2])
    print("within 200 MB of idle, every hostile input a 4xx:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
