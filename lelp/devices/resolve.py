"""Devices: what a job's ``device`` means, and where a job ran (torch imported only when called).

One ``resolve_device`` for the whole library: ``auto`` is the GPU when there is one, else the
CPU; ``gpu`` means CUDA and fails clearly when there is none (it never falls back silently:
a job that asked for a GPU and trained on the CPU would look like a slow GPU); anything else
is a ``torch.device`` spelling (``cpu``, ``cuda``, ``cuda:1``).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from lelp.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for ``device`` (``auto``, ``cpu``, ``gpu``, ``cuda``, ``cuda:N``)."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device) == "gpu":
        if not torch.cuda.is_available():
            raise ConfigError("device 'gpu' was asked for but no CUDA device is available", param="device")
        return torch.device("cuda")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {str(device)!r}: use auto, cpu, gpu, cuda or cuda:N",
                          param="device") from exc


def describe_device(device: str | torch.device | None = "auto") -> dict[str, Any]:
    """Where work on ``device`` runs: host name, device, and on CUDA the GPU's name and memory.

    ``{"host", "device"}`` plus ``{"gpu_name", "gpu_memory_bytes"}`` on CUDA: what a job's
    events and metrics record (``metrics["ran_on"]``), so a slow or failed job can be traced
    to a machine and a card.
    """
    import torch

    resolved = resolve_device(device)
    out: dict[str, Any] = {"host": socket.gethostname(), "device": str(resolved)}
    if resolved.type == "cuda":
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        out.update(device=f"cuda:{index}", gpu_name=props.name, gpu_memory_bytes=int(props.total_memory))
    return out


def device_summary(described: dict[str, Any]) -> str:
    """One line for a job event: ``host h, cuda:0 (NVIDIA H200, 139.8 GiB)`` or ``host h, cpu``."""
    text = f"host {described.get('host')}, {described.get('device')}"
    if described.get("gpu_name"):
        text += f" ({described['gpu_name']}, {described.get('gpu_memory_bytes', 0) / 2**30:.1f} GiB)"
    return text
