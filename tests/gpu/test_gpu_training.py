"""The CUDA path of the library on a real GPU: precision, the batch finder, DDP on two GPUs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lelp.artifacts import load_student
from lelp.devices.cuda import GPUMemoryError, choose_precision, fit_batch_size
from lelp.pipeline import DistillConfig, distill
from tests.gpu.conftest import needs_two_gpus
from tests.tiny import make_text_rows, write_csv

TEXTS = ["good great film", "bad awful plot", "the story was quite dull", "a wonderful, moving story"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("gpu-data")
    return write_csv(root / "train.csv", make_text_rows(400, seed=1)), write_csv(root / "eval.csv",
                                                                                 make_text_rows(80, seed=2))


def _config(teacher, data, **overrides) -> DistillConfig:  # noqa: ANN001
    train, evald = data
    base = dict(teacher_dir=str(teacher), train_path=str(train), eval_path=str(evald), method="kd", epochs=3,
                student="transformer", student_options={"layers": 1}, max_length=32, device="cuda")
    return DistillConfig(**{**base, **overrides})


def test_this_gpu_gets_bf16_for_transformers() -> None:
    precision = choose_precision("cuda", "transformer")
    assert precision.name == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")


def test_the_batch_finder_meets_a_real_out_of_memory() -> None:
    free, _total = torch.cuda.mem_get_info()
    row_bytes = free // 8  # 16 rows would need twice the free memory

    def attempt(size: int) -> None:
        block = torch.empty(size * row_bytes, dtype=torch.uint8, device="cuda")
        del block

    assert 1 <= fit_batch_size(attempt, 16) <= 8
    with pytest.raises(GPUMemoryError):
        fit_batch_size(lambda size: torch.empty(4 * free, dtype=torch.uint8, device="cuda"), 4)


def test_a_transformer_student_trains_on_the_gpu_as_well_as_on_the_cpu(tiny_teacher_dir, data, tmp_path) -> None:  # noqa: ANN001
    gpu = distill(_config(tiny_teacher_dir, data), tmp_path / "gpu", cache_dir=tmp_path / "cache-gpu")
    cpu = distill(_config(tiny_teacher_dir, data, device="cpu"), tmp_path / "cpu", cache_dir=tmp_path / "cache-cpu")
    assert abs(gpu.metrics["student"]["accuracy"] - cpu.metrics["student"]["accuracy"]) <= 0.1
    assert np.isfinite(gpu.metrics["training"]["history"][-1]["train_loss"])


@needs_two_gpus
def test_two_gpus_train_with_ddp_as_well_as_one(tiny_teacher_dir, data, tmp_path) -> None:  # noqa: ANN001
    one = distill(_config(tiny_teacher_dir, data), tmp_path / "one", cache_dir=tmp_path / "cache-one")
    two = distill(replace(_config(tiny_teacher_dir, data), gpus=2), tmp_path / "two",
                  cache_dir=tmp_path / "cache-two", checkpoint_dir=tmp_path / "ckpt")
    assert abs(two.metrics["student"]["accuracy"] - one.metrics["student"]["accuracy"]) <= 0.1
    p_one, p_two = (load_student(r.artifact_dir).predict_proba(TEXTS) for r in (one, two))
    assert np.abs(p_one - p_two).max() < 0.15
    resumed = distill(replace(_config(tiny_teacher_dir, data), gpus=2), tmp_path / "two",
                      cache_dir=tmp_path / "cache-two", checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resumed_from_epoch == 3  # every epoch was checkpointed by rank 0
