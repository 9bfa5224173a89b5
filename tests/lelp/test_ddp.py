"""``gpus: 2`` on a CPU: two gloo ranks under torchrun train the transformer student with DDP.

What CI can check of the multi-GPU path without a GPU: the launcher, the rendezvous, the sharded
teacher extraction, DDP's gradient averaging, rank 0's checkpoints and a resume from a
one-process checkpoint, and that the student is as good as the one-process student.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lelp.artifacts import load_student
from lelp.devices.cuda import GPUMemoryError
from lelp.devices.ddp_launch import ERROR, _raise_rank_error
from lelp.errors import ConfigError, JobCancelled
from lelp.pipeline import DistillConfig, distill
from lelp.students.registry import KINDS, STUDENT_KINDS

TEXTS = ["good great film", "bad awful plot", "the story was quite dull", "a wonderful, moving story"]


def _config(teacher, train, eval_, **overrides) -> DistillConfig:
    base = dict(teacher_dir=str(teacher), train_path=str(train), eval_path=str(eval_), method="kd", epochs=3,
                student="transformer", student_options={"layers": 1}, max_length=32, device="cpu",
                augment=0)  # the cache holds train and eval rows only; variants are tested in test_augment
    return DistillConfig(**{**base, **overrides})


def _features(cache) -> dict[str, dict[str, np.ndarray]]:
    """The teacher-feature cache entries (those holding logits) of a cache directory, by key."""
    return {entry.parent.name: {name: np.load(entry.parent / f"{name}.npy") for name in ("embeddings", "logits")}
            for entry in cache.glob("*/logits.npy")}


@pytest.mark.slow
def test_two_gloo_ranks_resume_a_one_process_checkpoint_and_match_its_quality(
        tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path):
    cfg = _config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv)
    checkpoints = tmp_path / "ckpt"

    def keep_the_first(path: str) -> None:  # as if a one-process run had been killed after epoch 1
        if not checkpoints.exists():
            checkpoints.mkdir()
            shutil.copy(path, checkpoints / Path(path).name)

    one = distill(cfg, tmp_path / "one", cache_dir=tmp_path / "cache-one", checkpoint_dir=tmp_path / "ckpt-one",
                  on_checkpoint=keep_the_first)
    progress, relayed = [], []
    two = distill(replace(cfg, gpus=2), tmp_path / "two", cache_dir=tmp_path / "cache-two",
                  checkpoint_dir=checkpoints, progress=progress.append, on_checkpoint=relayed.append)

    assert two.resumed_from_epoch == 1  # the ranks took over the one-process checkpoint
    assert [h["epoch"] for h in two.metrics["training"]["history"]] == [1, 2, 3]
    assert len(relayed) == 2 and torch.load(relayed[-1], weights_only=True)["epoch"] == 3  # rank 0 wrote 2, 3
    assert {p.stage for p in progress} >= {"extract", "train", "save"}  # relayed from rank 0
    # the sharded extraction wrote the same features as one process
    ref, sharded = _features(tmp_path / "cache-one"), _features(tmp_path / "cache-two")
    assert len(ref) == 2 and sharded.keys() == ref.keys()  # train and eval rows, the same cache keys
    for key, arrays in ref.items():
        np.testing.assert_allclose(sharded[key]["logits"], arrays["logits"], atol=1e-4)
        np.testing.assert_allclose(sharded[key]["embeddings"].astype(np.float32),
                                   arrays["embeddings"].astype(np.float32), atol=1e-2)
    # the same quality (dropout masks differ per rank, so not bit for bit)
    for key in ("accuracy", "macro_f1"):
        assert abs(two.metrics["student"][key] - one.metrics["student"][key]) <= 0.1, key
    assert abs(two.metrics["agreement"] - one.metrics["agreement"]) <= 0.1
    p_one = load_student(one.artifact_dir).predict_proba(TEXTS)
    p_two = load_student(two.artifact_dir).predict_proba(TEXTS)
    assert np.abs(p_one - p_two).max() < 0.1


def test_a_cancel_stops_the_ranks(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path):
    cfg = _config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, gpus=2)
    with pytest.raises(JobCancelled):
        distill(cfg, tmp_path / "out", should_cancel=lambda: True)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_a_rank_error_comes_back_as_the_same_library_error(tmp_path):
    (tmp_path / f"{ERROR}.1").write_text(json.dumps({"code": "invalid_config", "message": "bad", "param": "x"}))
    with pytest.raises(ConfigError, match="bad") as info:
        _raise_rank_error(tmp_path, 3)
    assert info.value.param == "x"
    (tmp_path / f"{ERROR}.1").write_text(json.dumps({"code": "gpu_out_of_memory", "message": "m", "param": None}))
    with pytest.raises(GPUMemoryError):
        _raise_rank_error(tmp_path, 3)
    (tmp_path / f"{ERROR}.1").unlink()
    (tmp_path / "torchrun.log").write_text("Traceback: boom")
    with pytest.raises(RuntimeError, match="boom"):
        _raise_rank_error(tmp_path, 1)


@pytest.mark.parametrize("student", [k for k in STUDENT_KINDS if not KINDS[k].multi_gpu])
def test_several_gpus_are_for_the_transformer_student_only(student, tiny_teacher_dir, tiny_train_csv, tmp_path):
    base = str(tiny_teacher_dir) if KINDS[student].base == "required" else None  # that check comes first
    cfg = _config(tiny_teacher_dir, tiny_train_csv, None, student=student, student_options=None, gpus=2,
                  student_base=base)
    with pytest.raises(ConfigError, match="transformer") as info:
        distill(cfg, tmp_path / "out")
    assert info.value.param == "gpus"


@pytest.mark.parametrize("gpus", [0, 65, True, 1.5])
def test_gpus_must_be_a_whole_number_in_range(gpus, tiny_teacher_dir, tiny_train_csv, tmp_path):
    with pytest.raises(ConfigError, match="gpus"):
        distill(_config(tiny_teacher_dir, tiny_train_csv, None, gpus=gpus), tmp_path / "out")
