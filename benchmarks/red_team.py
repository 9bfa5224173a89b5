"""Issue 18's attacks against a live ``lelp serve``: the answer, the time and the API's RSS for each.

Starts ``lelp serve`` (API + one Celery worker, SQLite, local broker) in a fresh data
directory with its default limits, then sends each attack of issue 18 and prints one
markdown row per attack: HTTP status and error code, seconds to the answer, and the API
process's RSS before, at its peak (sampled every 20 ms) and after. docs/RELIABILITY.md
quotes the table. The ``kill -9`` of ``lelp serve`` and the ``$\\notacommand$`` report are
measured by their tests (tests/e2e/test_killed_serve.py, tests/lelp/test_report_text.py).

    python benchmarks/red_team.py            # ~2 min on 2 busy cores (the slow body waits 30 s)
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import socket
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hostile_memory import MB, rss  # noqa: E402
from demo.run import free_port, start_server, stop_server, wait_ready  # noqa: E402
from tests.tiny import make_text_rows, make_tiny_teacher, write_csv  # noqa: E402
from worker.embedded import API_KEY_FILE  # noqa: E402


class Peak:
    """Samples a process's RSS every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def raw(port: int, path: str, headers: dict[str, str], body: bytes = b"", *, trickle_s: float | None = None,
        timeout_s: float = 60) -> tuple[int, str]:
    """A hand-written request: headers, then ``body`` sent in 64 KiB pieces (or 1 byte every
    ``trickle_s``) while watching for an answer; returns (status, error code)."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(0.05)
    lines = [f"POST {path} HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers.items())]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer, sent, deadline = b"", 0, time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
            except TimeoutError:
                pass
            if sent < len(body):
                piece = body[sent:sent + 1] if trickle_s else body[sent:sent + 65536]
                try:
                    conn.sendall(piece)
                except OSError:
                    sent = len(body)
                sent += len(piece)
                if trickle_s:
                    time.sleep(trickle_s)
    finally:
        conn.close()
    if not answer:
        return 0, "no answer"
    head, _, rest = answer.partition(b"\r\n\r\n")
    try:
        code = json.loads(rest)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = ""
    return int(head.split()[1]), code


def csv_rows(rows: int) -> bytes:
    return ("text,label\n" + "the same short review, again and again,positive\n" * rows).encode()


def parquet_dictionary() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    table = pa.table({"text": ["x" * 10_000] * 20_000, "label": ["a"] * 20_000})
    pq.write_table(table, buf, use_dictionary=True, compression="zstd", row_group_size=20_000)
    return buf.getvalue()


def tar_long_name() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a/" * (25 * MB) + "config.json")  # a 50 MiB GNU long name
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    return buf.getvalue()


def zip_of(entries: list[tuple[str, bytes]], stored: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lelp-red-team-") as tmp:
        tmp_path = Path(tmp)
        data_dir = tmp_path / "data"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(data_dir, port, tmp_path / "serve.log")
        try:
            wait_ready(base, server)
            key = (data_dir / API_KEY_FILE).read_text().strip()
            auth = {"Authorization": f"Bearer {key}"}
            client = httpx.Client(base_url=base, headers=auth, timeout=120)
            teacher_dir = make_tiny_teacher(tmp_path / "teacher")
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(teacher_dir, arcname="m")
            teacher = client.post("/v1/teachers", files={"file": ("t.tar.gz", buf.getvalue())}).json()
            train = write_csv(tmp_path / "train.csv", make_text_rows(120, seed=1))
            dataset = client.post("/v1/datasets", files={"file": ("train.csv", train.read_bytes())}).json()
            job = {"teacher_id": teacher["id"], "train_dataset_id": dataset["id"], "method": "kd",
                   "student": {"kind": "transformer"}, "device": "auto", "hyperparameters": {"epochs": 1}}

            def upload(route: str, name: str, content: bytes, **fields: str) -> Callable[[], tuple[int, str]]:
                def send() -> tuple[int, str]:
                    r = client.post(route, files={"file": (name, content)}, data=fields)
                    return r.status_code, r.json().get("error", {}).get("code", "") if r.status_code >= 400 else ""
                return send

            def submit(**hyperparameters: int) -> Callable[[], tuple[int, str]]:
                def send() -> tuple[int, str]:
                    body = {**job, "hyperparameters": {**job["hyperparameters"], **hyperparameters}}
                    r = client.post("/v1/jobs", json=body)
                    return r.status_code, r.json().get("error", {}).get("code", "") if r.status_code >= 400 else ""
                return send

            secret = "lelp_" + "Q" * 43

            def query_key() -> tuple[int, str]:
                r = httpx.get(f"{base}/v1/jobs?api_key={secret}")
                time.sleep(0.3)
                log = (tmp_path / "serve.log").read_text(errors="replace")
                seen = "the key is in the log!" if secret in log else (
                    "access log: `api_key=REDACTED" if "api_key=REDACTED" in log else "no access-log line: `-")
                return r.status_code, f"{r.json()['error']['code']}`; {seen}"

            wide = (",".join(["text", "label"] + [f"c{i}" for i in range(200_000)]) + "\n").encode()
            attacks: list[tuple[str, Callable[[], tuple[int, str]]]] = [
                ("100 MiB JSON body, no key, `POST /v1/jobs`",
                 lambda: raw(port, "/v1/jobs", {"Content-Type": "application/json",
                                                "Content-Length": str(100 * MB)}, b" " * (100 * MB))),
                ("declared 1 GiB, 1 MiB sent, no key, `POST /v1/jobs`",
                 lambda: raw(port, "/v1/jobs", {"Content-Type": "application/json",
                                                "Content-Length": str(1024 * MB)}, b" " * MB)),
                ("declared 1 GiB, 1 MiB sent, no key, `POST /v1/models/x/predict`",
                 lambda: raw(port, "/v1/models/m_x/predict", {"Content-Type": "application/json",
                                                              "Content-Length": str(1024 * MB)}, b" " * MB)),
                ("declared 1 GiB with a key, `POST /v1/jobs`",
                 lambda: raw(port, "/v1/jobs", {**auth, "Content-Type": "application/json",
                                                "Content-Length": str(1024 * MB)}, b" " * MB)),
                ("2 MiB chunked JSON with a key (no Content-Length)",
                 lambda: raw(port, "/v1/jobs", {**auth, "Content-Type": "application/json",
                                                "Transfer-Encoding": "chunked"},
                             b"".join(b"10000\r\n" + b" " * 65536 + b"\r\n" for _ in range(32)))),
                ("JSON body at 1 byte / 2 s with a key",
                 lambda: raw(port, "/v1/jobs", {**auth, "Content-Type": "application/json", "Content-Length": "100"},
                             b" " * 100, trickle_s=2.0, timeout_s=60)),
                ("`.csv.gz`, 1,000,000 rows", upload("/v1/datasets", "d.csv.gz", gzip.compress(csv_rows(1_000_000)),
                                                     format="csv")),
                ("`.csv.bz2`, 1,000,000 rows", upload("/v1/datasets", "d.csv.bz2", bz2.compress(csv_rows(1_000_000)),
                                                      format="csv")),
                ("Parquet, dictionary column: 20,000 rows x 10 kB", upload("/v1/datasets", "d.parquet",
                                                                          parquet_dictionary())),
                ("CSV with 200,000 columns", upload("/v1/datasets", "d.csv", wide)),
                ("tar with a 50 MiB GNU long name", upload("/v1/teachers", "t.tar.gz", tar_long_name())),
                ("zip whose central directory holds 400,000 entries",
                 upload("/v1/teachers", "t.zip", zip_of([(f"f{i}", b"") for i in range(400_000)], stored=True))),
                ("zip with a file and a same-named folder",
                 upload("/v1/teachers", "t.zip", zip_of([("m/config.json", b"{}"), ("m/config.json/x", b"1")]))),
                ("zip with a 300-character member name", upload("/v1/teachers", "t.zip", zip_of([("n" * 300, b"1")]))),
                ("zip: 10 MB of zeros (a bomb under the 10 GiB cap)",
                 upload("/v1/teachers", "t.zip", zip_of([("m/config.json", b"\0" * (10 * MB))]))),
                ("`hyperparameters.gpus: 64`, `device: auto`, no GPU worker", submit(gpus=64)),
                ("`hyperparameters.gpus: 2`, no GPU worker", submit(gpus=2)),
                ("`max_length: 4096` on a teacher with 128 positions", submit(max_length=4096)),
                ("`?api_key=` in the query", query_key),
            ]
            print(f"API process {server.pid}; idle RSS {rss(server.pid) / MB:.0f} MB\n")
            print("| attack | answer | time | API RSS before -> peak -> after |")
            print("|---|---|---|---|")
            for name, attack in attacks:
                before = rss(server.pid)
                started = time.monotonic()
                with Peak(server.pid) as peak:
                    status, code = attack()
                    elapsed = time.monotonic() - started
                    time.sleep(0.2)
                after = rss(server.pid)
                print(f"| {name} | {status} `{code}` | {elapsed:.2f} s | {before / MB:.0f} -> {peak.peak / MB:.0f} -> "
                      f"{after / MB:.0f} MB |", flush=True)
            client.close()
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
