"""The CUDA-only choices of lelp.devices.cuda and the trainer's micro-batches, checked on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lelp.devices.cuda import FP32, TEACHER, GPUMemoryError, Precision, choose_precision, fit_batch_size, to_device
from lelp.students.base import Student
from lelp.students.registry import KINDS, STUDENT_KINDS
from lelp.training.loop import TrainConfig, prepare, train_epoch


@pytest.mark.parametrize("kind", [TEACHER, *STUDENT_KINDS])
def test_the_cpu_always_trains_in_fp32(kind: str) -> None:
    assert choose_precision("cpu", kind, bf16_supported=True) == FP32
    assert FP32.scaler(torch.device("cpu")) is None and FP32.name == "fp32"


def test_cuda_uses_bf16_for_transformers_and_fp16_with_a_scaler_without_bf16() -> None:
    bf16 = choose_precision("cuda", "transformer", bf16_supported=True)
    assert bf16 == Precision(torch.bfloat16) and not bf16.grad_scaler and bf16.name == "bf16"
    assert choose_precision("cuda:1", "teacher", bf16_supported=True) == bf16
    fp16 = choose_precision("cuda", "transformer", bf16_supported=False)
    assert fp16 == Precision(torch.float16, grad_scaler=True) and fp16.name == "fp16"
    assert KINDS["transformer"].mixed_precision


@pytest.mark.parametrize("kind", STUDENT_KINDS)
def test_cuda_precision_of_a_student_is_its_kind_table_entry(kind: str) -> None:
    """Mixed precision where the kind table says so; the small students' cost is not in matmuls."""
    expected = Precision(torch.bfloat16) if KINDS[kind].mixed_precision else FP32
    assert choose_precision("cuda", kind, bf16_supported=True) == expected


def test_autocast_of_a_mixed_precision_really_casts() -> None:
    a = torch.ones(4, 4)
    with Precision(torch.bfloat16).autocast(torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16
    with FP32.autocast(torch.device("cpu")):
        assert (a @ a).dtype == torch.float32


def _oom_above(limit: int, tried: list[int], error=torch.OutOfMemoryError):
    def attempt(size: int) -> None:
        tried.append(size)
        if size > limit:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
    return attempt


def test_batch_finder_halves_until_the_batch_fits() -> None:
    tried, freed = [], []
    assert fit_batch_size(_oom_above(10, tried), 64, free_memory=lambda: freed.append(1)) == 8
    assert tried == [64, 32, 16, 8] and len(freed) == 3
    assert fit_batch_size(_oom_above(100, []), 64) == 64  # fits at once: tried once


def test_batch_finder_knows_the_old_runtime_error_of_an_oom() -> None:
    assert fit_batch_size(_oom_above(5, [], RuntimeError), 12, free_memory=lambda: None) == 3


def test_batch_finder_says_so_when_even_the_smallest_batch_does_not_fit() -> None:
    tried: list[int] = []
    with pytest.raises(GPUMemoryError, match="a batch of 1 row") as info:
        fit_batch_size(_oom_above(0, tried), 6, free_memory=lambda: None)
    assert tried == [6, 3, 1]
    assert info.value.code == "gpu_out_of_memory" and info.value.param == "batch_size"


def test_batch_finder_lets_other_errors_through() -> None:
    def broken(size: int) -> None:
        raise ValueError("shapes do not match")

    with pytest.raises(ValueError, match="shapes"):
        fit_batch_size(broken, 8)


def test_to_device_on_the_cpu_is_a_plain_copy() -> None:
    t = torch.arange(5)
    assert torch.equal(to_device(t, torch.device("cpu")), t)


class _Rows:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": self.x[indices].to(device)}


class _Linear(Student):
    kind = "linear"
    hidden_size = 6

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(6, 3)

    def forward(self, batch):
        return self.out(batch["x"]), batch["x"]


@pytest.mark.parametrize("micro_batch", [3, 5])
def test_micro_batches_train_exactly_as_the_whole_batch(micro_batch: int) -> None:
    """What the GPU batch finder relies on: accumulating micro-batch gradients is one batch's step."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen)
    targets = torch.softmax(torch.randn(40, 3, generator=gen), 1)
    labels = torch.from_numpy(np.arange(40) % 3)
    config = TrainConfig(epochs=2, learning_rate=0.05, batch_size=16)
    weights = []
    for micro in (0, micro_batch):
        torch.manual_seed(1)
        student = _Linear()
        state = prepare(student, 40, config, torch.device("cpu"))
        state.model, state.micro_batch = student, micro
        losses = [train_epoch(state, e, _Rows(x), targets, labels, config) for e in range(2)]
        weights.append((student.out.weight.detach().clone(), losses, state.step))
    (w_full, l_full, steps_full), (w_micro, l_micro, steps_micro) = weights
    assert steps_full == steps_micro == 6  # ceil(40 / 16) steps per epoch either way
    torch.testing.assert_close(w_micro, w_full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l_micro, l_full, rtol=1e-5)
