"""A torchrun rank's entry point: init the process group, run ``distill``, relay to the launcher.

Kept apart from ``lelp.devices.ddp_launch`` (the parent's side) so that the launcher, which
``lelp.pipeline`` calls, never imports the pipeline back: torchrun runs
``python -m lelp.devices.ddp_rank RUN.json`` in each of its processes.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

from lelp.devices.ddp_launch import ERROR, EVENTS, RESULT
from lelp.errors import LELPError


def run_rank(spec: dict) -> int:
    """One rank's whole job (called under torchrun): init the group, ``distill``, report."""
    import torch
    import torch.distributed as dist

    from lelp.devices.resolve import resolve_device
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
