"""What training and teacher extraction do differently on CUDA: precision, TF32, copies, batch fit.

On the CPU every function here is a no-op or returns the fp32 choice, so CPU runs stay exactly as
they were (bitwise: CPU autocast is slower than fp32 for these models and changes results).

- ``choose_precision``: bf16 autocast on CUDA for the teacher and the student kinds marked
  ``mixed_precision`` in the kind table (fp16 + a gradient scaler on GPUs without bf16, e.g.
  V100/T4); the small students stay fp32, their cost is the optimiser and the input path.
- ``enable_tf32``: fp32 matmuls (the head, the optimiser-side work) on tensor cores.
- ``to_device``: pinned host memory and a non-blocking copy, so the copy overlaps compute.
- ``fit_batch_size``: the largest micro-batch (halving from the asked batch size) whose
  forward + backward fits the GPU, found once before the first epoch; the trainer then
  accumulates gradients over micro-batches so the optimiser still sees the asked batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lelp.errors import LELPError
from lelp.students.registry import kind_info

# ``choose_precision``'s kind for the teacher's forward pass (a transformer: mixed precision pays);
# a student kind's choice is its ``mixed_precision`` in ``lelp.students.registry.KINDS``.
TEACHER = "teacher"


class GPUMemoryError(LELPError):
    """Not even the smallest batch fits in the GPU's memory."""

    code = "gpu_out_of_memory"


@dataclass(frozen=True)
class Precision:
    """How a forward pass runs: ``dtype`` None is plain fp32 (no autocast)."""

    dtype: torch.dtype | None = None
    grad_scaler: bool = False

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self, device: torch.device) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 (bf16 has fp32's range and needs none)."""
        return torch.amp.GradScaler(device.type) if self.grad_scaler else None


FP32 = Precision()


def choose_precision(device: torch.device | str, kind: str, *, bf16_supported: bool | None = None) -> Precision:
    """The precision for ``kind`` (a student kind, or ``"teacher"``) on ``device``.

    ``bf16_supported`` defaults to asking CUDA; tests pass it to check the choice on a CPU.
    """
    if torch.device(device).type != "cuda" or not uses_mixed_precision(kind):
        return FP32
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return Precision(torch.bfloat16) if bf16_supported else Precision(torch.float16, grad_scaler=True)


def uses_mixed_precision(kind: str) -> bool:
    """True for the teacher and for the student kinds whose table entry says ``mixed_precision``."""
    return kind == TEACHER or kind_info(kind).mixed_precision


def enable_tf32(device: torch.device | str) -> None:
    """TF32 for fp32 matmuls and convolutions on CUDA (Ampere and newer); nothing on the CPU."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; from pinned memory without blocking when that is a GPU."""
    if device.type != "cuda" or tensor.device.type == "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's allocation failure (``torch.OutOfMemoryError`` or its older RuntimeError)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def fit_batch_size(try_batch: Callable[[int], None], batch_size: int, *, minimum: int = 1,
                   free_memory: Callable[[], None] | None = None) -> int:
    """The largest of ``batch_size, batch_size/2, ...`` (not below ``minimum``) for which
    ``try_batch(size)`` raises no out-of-memory error; any other error propagates.

    Raises ``GPUMemoryError`` when even ``minimum`` does not fit.
    """
    size = max(batch_size, minimum)
    while True:
        try:
            try_batch(size)
            return size
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # the failed attempt's tensors are freed once the exception (and its traceback) is dropped
        (free_memory or _empty_cuda_cache)()
        if size <= minimum:
            raise GPUMemoryError(f"a batch of {minimum} row(s) does not fit in the GPU's memory{_memory_note()}: "
                                 "use a smaller student (student_options.layers), a shorter max_length, "
                                 "or a GPU with more memory", param="batch_size")
        size = max(minimum, size // 2)


def _empty_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _memory_note() -> str:
    if not torch.cuda.is_available():
        return ""
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return f" ({total / 2**30:.1f} GiB)"
