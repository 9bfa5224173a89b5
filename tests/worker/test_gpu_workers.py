"""``lelp worker --gpus``: one pinned worker process per GPU, and a parent that never loads CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from worker.cli import app, worker_command
from worker.gpu_workers import GPUWorker, gpu_groups, gpu_workers


def test_gpu_groups_split_the_list_into_pinned_sets() -> None:
    assert gpu_groups("0,1") == ["0", "1"]
    assert gpu_groups(" 0, 1,2,3 ", per_worker=2) == ["0,1", "2,3"]


@pytest.mark.parametrize(("gpus", "per_worker", "words"), [
    ("", 1, "indices"), ("a,b", 1, "indices"), ("0,-1", 1, "indices"), ("0,0", 1, "twice"),
    ("0,1,2", 2, "does not divide"), ("0", 0, "does not divide")])
def test_malformed_gpu_lists_are_refused(gpus: str, per_worker: int, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        gpu_groups(gpus, per_worker)


def test_each_gpu_worker_consumes_the_queue_one_job_at_a_time_under_its_own_name() -> None:
    workers = gpu_workers(["0", "2,3"], worker_command, "gpu")
    assert [w.devices for w in workers] == ["0", "2,3"]
    for w, name in zip(workers, ["gpu0@%h", "gpu2-3@%h"], strict=True):
        args = w.command
        assert args[args.index("-Q") + 1] == "gpu" and args[args.index("-c") + 1] == "1"
        assert args[args.index("-n") + 1] == name
    env = workers[1].env({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["PATH"] == "/bin"


def test_supervisor_pins_each_child_and_never_imports_torch(tmp_path) -> None:  # noqa: ANN001
    """Real child processes report the env they got; the first to exit ends the set with its status."""
    code = textwrap.dedent(f"""
        import json, sys
        from worker.gpu_workers import GPUWorker, supervise
        child = ("import os, sys, time; d = os.environ['CUDA_VISIBLE_DEVICES']; "
                 "open(sys.argv[1] + '/' + d, 'w').write(os.environ['CUDA_VISIBLE_DEVICES']); "
                 "time.sleep(0.5 if d == '1' else 60); sys.exit(7)")
        workers = [GPUWorker(d, [sys.executable, '-c', child, {str(tmp_path)!r}]) for d in ('0', '1')]
        status = supervise(workers, {{'PATH': '/usr/bin:/bin'}}, grace_s=10, poll_s=0.1)
        print(json.dumps({{"status": status, "torch": [m for m in sys.modules if m.split('.')[0] == 'torch']}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"status": 7, "torch": []}  # GPU 1's child exited first; the parent stayed CUDA-free
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"0": "0", "1": "1"}


def test_cli_refuses_a_bad_gpu_list_in_one_line() -> None:
    result = CliRunner().invoke(app, ["worker", "--queues", "gpu", "--gpus", "0,0"])
    assert result.exit_code == 2
    assert "error: --gpus names a GPU twice" in result.output
    assert "Traceback" not in result.output


def test_gpu_worker_env_keeps_the_settings() -> None:
    w = GPUWorker("1", ["celery"])
    assert w.env({"LELP_DATABASE_URL": "postgresql://x"})["LELP_DATABASE_URL"] == "postgresql://x"
