"""Where this process stands in a DDP run (started by ``lelp.devices.ddp_launch`` under torchrun).

Outside such a run (``torch.distributed`` not initialised) every helper answers as the one and
only process: rank 0 of 1, so single-process code paths need no branches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0: the one that writes checkpoints, caches, the artifact and reports progress."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def sum_floats(*values: float) -> list[float]:
    """The sums of ``values`` over all ranks (the values themselves in one process)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def shard_rows(n: int, of_rank: int | None = None, world: int | None = None) -> np.ndarray:
    """The rows of ``range(n)`` one rank owns: every ``world``-th, starting at its rank."""
    r = rank() if of_rank is None else of_rank
    w = world_size() if world is None else world
    return np.arange(r, n, w)
