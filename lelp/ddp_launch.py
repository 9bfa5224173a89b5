"""One job on several GPUs: ``distill`` with ``gpus > 1`` runs itself again under torchrun.

The calling process (the worker's job, or ``lelp distill``) starts
``python -m torch.distributed.run --standalone --nproc-per-node N -m lelp.ddp_launch RUN.json``
and waits: torchrun (torch's elastic launcher, c10d rendezvous on localhost) starts N ranks,
each runs ``distill`` with the same config inside an initialised process group (NCCL on GPUs,
gloo on a CPU, which is what CI tests), and ``lelp.train`` trains with DDP. The teacher's
extraction is sharded over the ranks (``lelp.features``), checkpoints keep the one-process
format and are written by rank 0 alone, so resume works as before (a resumed run may even use
another number of GPUs). Rank 0 writes the artifact and relays progress, checkpoints and a
user error through files in a run directory, which this process reads back; a cancel stops the
whole torchrun process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

from lelp.errors import ConfigError, JobCancelled, LELPError
from lelp.progress import CancelCheck, Progress, ProgressCallback

EVENTS, RESULT, ERROR, LOG = "events.jsonl", "result.json", "error.json", "torchrun.log"
POLL_S = 0.5
STOP_GRACE_S = 15.0


# torchrun must stop when the job's process dies (a Celery time limit SIGKILLs it): a parent-death
# signal, set by a tiny exec wrapper (it survives exec; a preexec_fn is unsafe in a threaded worker).
_DIE_WITH_PARENT = ("import ctypes, os, signal, sys\n"
                    "try:\n    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
                    "except (OSError, AttributeError):\n    pass\n"
                    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")


def torchrun_command(spec_path: Path, processes: int) -> list[str]:
    return [sys.executable, "-c", _DIE_WITH_PARENT, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", "--max-restarts=0", "-m", "lelp.ddp_launch", str(spec_path)]


def check_devices(config) -> None:
    """Refuse a job that asks for more GPUs than this process can see (before starting anything)."""
    import torch

    from lelp.devices import resolve_device

    if resolve_device(config.device).type != "cuda":
        return  # N gloo processes on the CPU: only useful to test the DDP path
    visible = torch.cuda.device_count()
    if visible < config.gpus:
        raise ConfigError(f"the job asks for {config.gpus} GPUs but this worker sees {visible} "
                          "(start it with `lelp worker --gpus 0,1 --gpus-per-worker 2`)", param="gpus")


class _Events:
    """Reads the lines rank 0 appends to the events file, as they come."""

    def __init__(self, path: Path, progress: ProgressCallback | None, on_checkpoint) -> None:
        self.path, self.progress, self.on_checkpoint, self.offset = path, progress, on_checkpoint, 0

    def drain(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            event = json.loads(line)
            if "progress" in event and self.progress is not None:
                self.progress(Progress(**event["progress"]))
            elif "checkpoint" in event and self.on_checkpoint is not None:
                self.on_checkpoint(event["checkpoint"])


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to torchrun's process group (it forwards it to the ranks), SIGKILL after a grace."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _error_class(code: str) -> type[LELPError]:
    """The library error class of ``code`` (any subclass of LELPError, the GPU's included)."""
    import lelp.gpu  # noqa: F401  (GPUMemoryError)

    pending, seen = [LELPError], []
    while pending:
        cls = pending.pop()
        seen.append(cls)
        pending += cls.__subclasses__()
    return next((c for c in seen if c.code == code), LELPError)


def _raise_rank_error(run_dir: Path, returncode: int) -> None:
    errs = sorted(run_dir.glob(f"{ERROR}.*"))
    if errs:
        info = json.loads(errs[0].read_text())
        raise _error_class(info["code"])(info["message"], param=info.get("param"))
    log = (run_dir / LOG).read_text(errors="replace")[-4000:] if (run_dir / LOG).exists() else ""
    raise RuntimeError(f"torchrun exited with status {returncode}:\n{log}")


def launch(config, out_dir, *, cache_dir=None, checkpoint_dir=None, progress: ProgressCallback | None = None,
           should_cancel: CancelCheck | None = None, on_checkpoint=None):
    """Run ``distill(config, ...)`` on ``config.gpus`` ranks under torchrun; its ``DistillResult``."""
    from lelp.pipeline import DistillResult

    check_devices(config)
    with tempfile.TemporaryDirectory(prefix="lelp-ddp-") as tmp:
        run_dir = Path(tmp)
        spec = {"config": asdict(config), "out_dir": str(Path(out_dir).resolve()), "run_dir": str(run_dir),
                # the shards of the teacher's features meet in one directory that every rank sees
                "cache_dir": str(Path(cache_dir).resolve()) if cache_dir else str(run_dir / "cache"),
                "checkpoint_dir": str(Path(checkpoint_dir).resolve()) if checkpoint_dir else None}
        spec_path = run_dir / "run.json"
        spec_path.write_text(json.dumps(spec))
        events = _Events(run_dir / EVENTS, progress, on_checkpoint)
        with (run_dir / LOG).open("wb") as log:
            process = subprocess.Popen(torchrun_command(spec_path, config.gpus), stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                while process.poll() is None:
                    events.drain()
                    if should_cancel is not None and should_cancel():
                        _stop(process)
                        raise JobCancelled("the job was cancelled")
                    time.sleep(POLL_S)
            except BaseException:
                _stop(process)
                raise
        events.drain()
        if process.returncode != 0:
            _raise_rank_error(run_dir, process.returncode)
        result = json.loads((run_dir / RESULT).read_text())
    metrics = json.loads((Path(result["artifact_dir"]) / "metrics.json").read_text())
    return DistillResult(result["artifact_dir"], metrics, resumed_from_epoch=result["resumed_from_epoch"])


def run_rank(spec: dict) -> int:
    """One rank's whole job (called under torchrun): init the group, ``distill``, report."""
    import torch
    import torch.distributed as dist

    from lelp.devices import resolve_device
    from lelp.pipeline import DistillConfig, distill

    run_dir = Path(spec["run_dir"])
    config = DistillConfig(**spec["config"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = resolve_device(config.device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
        config = replace(config, device=f"cuda:{local_rank}")
    else:  # the ranks share the CPU cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    rank = dist.get_rank()
    events = (run_dir / EVENTS).open("a") if rank == 0 else None

    def emit(event: dict) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    try:
        result = distill(config, spec["out_dir"], cache_dir=spec["cache_dir"], checkpoint_dir=spec["checkpoint_dir"],
                         progress=(lambda p: emit({"progress": asdict(p)})) if events else None,
                         on_checkpoint=(lambda path: emit({"checkpoint": path})) if events else None)
        if rank == 0:
            (run_dir / RESULT).write_text(json.dumps({"artifact_dir": result.artifact_dir,
                                                      "resumed_from_epoch": result.resumed_from_epoch}))
        return 0
    except LELPError as exc:
        (run_dir / f"{ERROR}.{rank}").write_text(json.dumps({"code": exc.code, "message": exc.message,
                                                             "param": exc.param}))
        return 3
    finally:
        if events is not None:
            events.close()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return run_rank(json.loads(Path(args[0]).read_text()))


if __name__ == "__main__":
    sys.exit(main())
