"""Fixtures shared by every test package: tiny random teachers and small datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.tiny import make_text_rows, make_tiny_teacher, write_csv  # noqa: E402


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 32) binary classifier, labels negative/positive."""
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A random 1-layer BERT encoder without a head (hidden 24): a student base."""
    from tests.tiny import make_tiny_encoder

    return make_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny-encoder")


@pytest.fixture(scope="session")
def tiny_teacher_3class_dir(tmp_path_factory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher3") / "tiny-bert-3", labels=("neg", "pos", "sports"))


@pytest.fixture(scope="session")
def tiny_train_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", make_text_rows(160, seed=1))


@pytest.fixture(scope="session")
def tiny_eval_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "eval.csv", make_text_rows(40, seed=2))
