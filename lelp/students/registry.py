"""Student kinds by name: one table of what the rest of the system needs to know about each kind.

Each entry names a ``StudentKind`` (``lelp.students.kind``: the object that builds the model,
makes its inputs and writes / reads its artifact), imported lazily, plus the torch-free facts
that the config, the API's submit checks, the queue's routing and the serving runtime read from
here instead of keeping their own lists: its benchmarked training defaults, whether it takes a
``student_base``, whether it gains from a GPU, whether several GPUs may train it, and whether it trains in mixed
precision on CUDA. A new
kind is its module (with its ONNX graph in ``lelp.export.graphs``) plus one entry here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Literal

from lelp.errors import ConfigError


@dataclass(frozen=True)
class KindInfo:
    """What is known of a student kind without importing it (no torch)."""

    path: str  # "module:Class" of its StudentKind
    # the budget fits the data: at least ``epochs`` epochs and ``min_steps`` optimiser steps, at most
    # ``max_epochs``; ``patience`` epochs without a better validation score stop the run
    defaults: dict = field(default_factory=dict)
    base: Literal["required", "optional", "none"] = "optional"  # its student_base
    gains_from_gpu: bool = False  # device "auto" sends it to a GPU worker when one is alive
    multi_gpu: bool = False  # hyperparameters.gpus > 1 (DDP) may train it
    # bf16 autocast on CUDA (lelp.devices.cuda): where the forward pass is a transformer's matmuls;
    # the small students' cost is the optimiser and the input path, and they stay fp32
    mixed_precision: bool = False


# Defaults from benchmarks/quality.py (tables in benchmarks/README.md): the validation split picked
# tau = 1 for the table students (ngram, static, cnn) and tau >= 2 for encoder_mlp / transformer.
# gains_from_gpu: dense matmuls over an encoder (transformer forward and backward, encoder_mlp's
# frozen encoder over every row) are many times faster on a GPU; the table students train on
# sparse lookups at CPU speed, and on a GPU only the teacher pass would gain.
KINDS: dict[str, KindInfo] = {
    "ngram": KindInfo("lelp.students.ngram:NgramKind", base="none", defaults={
        "epochs": 5, "learning_rate": 3e-3, "batch_size": 64, "tau": 1.0, "min_steps": 1500, "max_epochs": 100,
        "patience": 3}),
    "static": KindInfo("lelp.students.static:StaticKind", defaults={
        "epochs": 5, "learning_rate": 2e-3, "batch_size": 64, "tau": 1.0, "min_steps": 1500, "max_epochs": 100,
        "patience": 3}),
    # labelled_alpha: alpha="auto"'s weight of the true labels' loss where >= 90% of the fit rows have labels, scaled
    # by the labelled share below that (lelp.config.resolve_alpha) (SST-2 7k
    # with the transfer rows' labels, 6 seeds: +1.11 +- 0.28 validation, +1.01 +- 0.23 test over teacher targets only)
    # augmented_epochs: on a set grown with teacher-scored variants, 3 planned epochs matched 5 (SST-2
    # 7k x 7, 6 seeds: validation +0.02 +- 0.19, test -0.05 +- 0.32) in 40% less training
    "cnn": KindInfo("lelp.students.cnn:CnnKind", defaults={
        "epochs": 5, "learning_rate": 2e-3, "batch_size": 64, "tau": 1.0, "min_steps": 1500, "max_epochs": 100,
        "patience": 3, "augmented_epochs": 3, "labelled_alpha": 0.5}),
    "encoder_mlp": KindInfo("lelp.students.encoder_mlp:EncoderMLPKind", base="required", gains_from_gpu=True,
                            defaults={"epochs": 20, "learning_rate": 1e-3, "batch_size": 64, "tau": 2.0,
                                      "min_steps": 2000, "max_epochs": 100, "patience": 5}),
    "transformer": KindInfo("lelp.students.transformer:TransformerKind", gains_from_gpu=True, multi_gpu=True,
                            mixed_precision=True,
                            defaults={"epochs": 3, "learning_rate": 5e-5, "batch_size": 32, "tau": 2.0,
                                      "min_steps": 500, "max_epochs": 10, "patience": 1}),
}
STUDENT_KINDS = tuple(KINDS)
# The best accuracy at >= 100x the teacher's CPU speed (benchmarks/README.md): every default's kind.
# cnn: 97.1% of the teacher at ~144x on SST-2 with 60k transfer rows (static 95.2%), and 94.0% vs
# 92.4% with 7k; chosen on validation (+0.96 at 60k, a tie at 7k).
DEFAULT_STUDENT_KIND = "cnn"
# ``student="auto"`` trains these (the kinds that serve far above the teacher's CPU speed and need no
# pretrained base) and keeps the most accurate on validation among those at or above ``min_speedup``.
AUTO_STUDENT = "auto"
AUTO_STUDENT_KINDS = ("cnn", "static", "ngram")
DEFAULT_MIN_SPEEDUP = 100.0
# What a user may ask for: a kind, or "auto" (as METHOD_CHOICES for methods).
STUDENT_CHOICES: tuple[str, ...] = (*STUDENT_KINDS, AUTO_STUDENT)


def kind_info(kind: str) -> KindInfo:
    if kind not in KINDS:
        raise ConfigError(f"unknown student {kind!r}; choose one of {', '.join(STUDENT_KINDS)}", param="student")
    return KINDS[kind]


def kinds_where(**facts) -> tuple[str, ...]:
    """The kinds whose facts match, e.g. ``kinds_where(gains_from_gpu=True)``."""
    return tuple(k for k, info in KINDS.items() if all(getattr(info, f) == v for f, v in facts.items()))


def student_kind(kind: str):
    """The ``StudentKind`` subclass for ``kind``."""
    module, name = kind_info(kind).path.split(":")
    return getattr(importlib.import_module(module), name)


def student_class(kind: str):
    """The ``nn.Module`` class of ``kind``."""
    return student_kind(kind).student_class
