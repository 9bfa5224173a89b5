"""One job on several GPUs: ``distill`` with ``gpus > 1`` runs itself again under torchrun.

The calling process (the worker's job, or ``lelp distill``) starts
``python -m torch.distributed.run --standalone --nproc-per-node N -m lelp.devices.ddp_rank RUN.json``
and waits: torchrun (torch's elastic launcher, c10d rendezvous on localhost) starts N ranks,
each runs ``distill`` with the same config inside an initialised process group (NCCL on GPUs,
gloo on a CPU, which is what CI tests), and ``lelp.training.loop`` trains with DDP. The teacher's
extraction is sharded over the ranks (``lelp.teacher.features``), checkpoints keep the one-process
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
from dataclasses import asdict
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
            f"--nproc-per-node={processes}", "--max-restarts=0", "-m", "lelp.devices.ddp_rank", str(spec_path)]


#: most gloo ranks on a CPU (they exist to test the DDP path; ``gpus: 64`` started 64 processes)
CPU_RANKS_ENV = "LELP_MAX_CPU_RANKS"
DEFAULT_CPU_RANKS = 2


def max_cpu_ranks() -> int:
    """``LELP_MAX_CPU_RANKS`` (default 2), never more than the machine's cores."""
    try:
        wanted = int(os.environ.get(CPU_RANKS_ENV, DEFAULT_CPU_RANKS))
    except ValueError:
        wanted = DEFAULT_CPU_RANKS
    return max(1, min(wanted, os.cpu_count() or 1))


def check_devices(config) -> None:
    """Refuse a job that asks for more processes than this process has devices (before starting
    anything): GPUs on CUDA; on a CPU, ``max_cpu_ranks()`` gloo ranks."""
    import torch

    from lelp.devices.resolve import resolve_device

    if resolve_device(config.device).type != "cuda":
        allowed = max_cpu_ranks()
        if config.gpus > allowed:
            raise ConfigError(f"the job asks for {config.gpus} processes (gpus) but this worker has no GPU; on a "
                              f"CPU at most {allowed} ranks run (to test the DDP path; {CPU_RANKS_ENV})",
                              param="gpus")
        return
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
    import lelp.devices.cuda  # noqa: F401  (GPUMemoryError)

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
    """Run ``distill(config, ...)`` on ``config.gpus`` ranks under torchrun; its ``DistillResult``.

    The parent only launches and waits: ``lelp.pipeline`` calls it, it never calls the pipeline
    back (the ranks' entry point, ``lelp.devices.ddp_rank``, does), so there is no import cycle.
    """
    from lelp.config import DistillResult

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
