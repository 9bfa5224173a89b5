"""The README's one-command demo: the embedded service, driven over HTTP like a user would.

``run_demo`` starts ``lelp serve`` as a child process on a free port, waits for
``/readyz``, reads the API key the server wrote on first start, uploads the teacher and
the data through ``LelpClient``, submits a job with the library's defaults (the ``cnn``
student, method ``auto``), follows it with a progress bar, calls predict on two sentences,
prints a report ending in what the student keeps of the teacher, and stops the server (which
stops its worker). It sits on the top floor with ``worker.cli`` because it starts the whole
service (``python -m worker.cli serve``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.client.http import ApiError, LelpClient
from lelp.method.registry import DEFAULT_METHOD
from lelp.students.registry import DEFAULT_STUDENT_KIND
from worker.embedded import API_KEY_FILE, REPO_ROOT, terminate

EXAMPLES = ["a warm, funny and beautifully acted film", "a dull plot and an awful, lifeless script"]
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int, log_file: Path) -> subprocess.Popen:
    """``lelp serve`` in a child process (its own session, so a Ctrl-C here stops it cleanly)."""
    env = dict(os.environ, LELP_DATA_DIR=str(data_dir))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        command = [sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(base_url: str, server: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    with LelpClient(base_url, api_key="") as probe:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"lelp serve exited with {server.returncode}")
            try:
                probe.ready()
                return
            except ApiError:
                time.sleep(0.5)
    raise TimeoutError(f"{base_url}/readyz did not answer within {timeout_s:.0f} s")


def stop_server(server: subprocess.Popen, grace_s: float = 30.0) -> None:
    terminate(server, grace_s)


def run_demo(data_dir: str | Path, teacher_dir: str | Path, train_csv: str | Path, eval_csv: str | Path,
             *, subclasses: int | None = None, epochs: int | None = None) -> dict:
    """Run the whole demo; returns the finished job, the model and the predictions."""
    from app.admin_commands import JobProgressBar

    data_dir = Path(data_dir).resolve()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(data_dir, port, data_dir / "logs" / "serve.log")
    try:
        print(f"starting the embedded service on {base_url} (data in {data_dir}) ...", flush=True)
        wait_ready(base_url, server)
        api_key = (data_dir / API_KEY_FILE).read_text().strip()
        with LelpClient(base_url, api_key, timeout=600) as client:
            teacher = client.upload_teacher(teacher_dir, name=Path(teacher_dir).name)
            print(f"teacher  {teacher['id']}  {teacher['architecture']}  labels={teacher['labels']}")
            train = client.upload_dataset(train_csv)
            evald = client.upload_dataset(eval_csv)
            for ds in (train, evald):
                print(f"dataset  {ds['id']}  {ds['name']}  rows={ds['rows']}  labels={ds['label_counts']}")
            # SST-2 sentences are short: 64 tokens cover them and halve the teacher's extraction time.
            hyper = {"subclasses": subclasses, "epochs": epochs, "max_length": 64}
            # The library's defaults: its default student kind, method auto (KD unless LELP wins on held-out rows).
            job = client.create_job(teacher["id"], train["id"], eval_dataset_id=evald["id"],
                                    method=DEFAULT_METHOD, student=DEFAULT_STUDENT_KIND, hyperparameters=hyper,
                                    # a retry of this run replays; a new run (new uploads) is a new job
                                    idempotency_key=f"demo-{teacher['id']}-{train['id']}")
            print(f"job      {job['id']}  submitted ({job['status']})")
            with JobProgressBar(job["id"]) as bar:
                job = client.wait_job(job["id"], on_progress=bar.update)
            if job["status"] != "succeeded":
                raise RuntimeError(f"the job ended {job['status']}: {job.get('error')}")
            model = client.get_model(job["model_id"])
            predictions = client.predict(model["id"], EXAMPLES)["predictions"]
        _report(job, model, predictions, data_dir)
        return {"job": job, "model": model, "predictions": predictions}
    finally:
        stop_server(server)


def _report(job: dict, model: dict, predictions: list[dict], data_dir: Path) -> None:
    metrics = model.get("metrics") or {}
    student, teacher = metrics.get("student") or {}, metrics.get("teacher") or {}

    def pct(value: object) -> str:
        return f"{100 * value:.1f}%" if isinstance(value, int | float) else "-"

    took = ""
    if job.get("started_at") and job.get("finished_at"):
        from datetime import datetime

        took = (datetime.fromisoformat(job["finished_at"])
                - datetime.fromisoformat(job["started_at"])).total_seconds()
        took = f" in {took:.0f} s"
    print(f"\nmodel {model['id']} ({model['kind']}, method {model['method']}) trained{took}")
    print("| | accuracy | macro-F1 | parameters | sentences/s |\n|---|---|---|---|---|")
    for name, m in (("teacher", teacher), ("student", student)):
        params = m.get("parameters")
        speed = m.get("sentences_per_second")
        print(f"| {name} | {pct(m.get('accuracy'))} | {pct(m.get('macro_f1'))} "
              f"| {f'{params:,}' if params else '-'} | {f'{speed:,.0f}' if speed else '-'} |")
    if "agreement" in metrics:
        print(f"student/teacher agreement: {pct(metrics['agreement'])}")
    from lelp.evaluate import keeps_line  # numpy only: no torch at import time
    from lelp.report.analysis import baseline_line

    for line in (keeps_line(metrics), baseline_line(metrics)):
        if line:
            print(line)
    print("\npredictions:")
    for text, pred in zip(EXAMPLES, predictions, strict=True):
        print(f"  {pred['label']:>10} ({pred['score']:.2f})  {text}")
    # The demo's server stops with the demo: say how to start it again before the curl line.
    print(f"\nthe model stays in {data_dir}; serve it again with `lelp serve --data-dir {data_dir}`, then:")
    print(f"curl -H \"Authorization: Bearer $(cat {data_dir / API_KEY_FILE})\" -H 'Content-Type: application/json' "
          f"-d '{json.dumps({'inputs': EXAMPLES[:1]})}' http://127.0.0.1:8000/v1/models/{model['id']}/predict")


if __name__ == "__main__":  # python -m demo.run DATA_DIR TEACHER_DIR TRAIN_CSV EVAL_CSV
    try:
        run_demo(*sys.argv[1:5])
    except (ApiError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
