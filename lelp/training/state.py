"""What one training run holds and a checkpoint keeps: config, result, optimisers, save/restore.

``lelp.training.loop`` runs the loop over it: ``prepare`` -> ``restore`` -> per epoch ``train_epoch`` +
``save``. A checkpoint is one ``torch.save`` dict, written atomically, holding everything an epoch
boundary needs (student, the method's extra term, optimisers, schedules, the fp16 grad scaler,
history and the best epoch's weights), so a resumed run takes exactly the uninterrupted run's steps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from lelp.devices import distributed
from lelp.devices.cuda import Precision, choose_precision
from lelp.students.base import Student


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    learning_rate: float
    batch_size: int
    subclasses: int = 1
    alpha: float = 0.0
    tau: float = 1.0
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    fitnet_weight: float = 1.0
    # > 0: the model scored, kept and shipped is an exponential moving average of the weights (decay per
    # optimiser step; torch.optim.swa_utils), the trained weights go on as they are
    ema_decay: float = 0.0
    seed: int = 0
    cancel_every: int = 10
    # epochs without a better held-out score before stopping (None: run every epoch)
    patience: int | None = None


@dataclass
class TrainResult:
    epoch_losses: list[float] = field(default_factory=list)
    resumed_from_epoch: int = 0  # epochs already done when this call started (0 = fresh)
    steps: int = 0
    history: list[dict] = field(default_factory=list)  # [{"epoch", "train_loss", "val_score"}]
    best_epoch: int | None = None  # 1-based; None without a held-out scorer
    best_score: float | None = None
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.epoch_losses)

    def summary(self) -> dict:
        """What the job's metrics report about this run (``metrics["training"]``)."""
        return {"epochs_run": self.epochs_run, "best_epoch": self.best_epoch, "best_val_score": self.best_score,
                "stopped_early": self.stopped_early, "steps": self.steps, "history": self.history}


def _optimizers(student: Student, extra: list[nn.Parameter], config: TrainConfig) -> list[torch.optim.Optimizer]:
    sparse = [p for n, p in student.named_parameters() if n in student.sparse_parameter_names]
    dense = [p for n, p in student.named_parameters() if n not in student.sparse_parameter_names] + extra
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(dense, lr=config.learning_rate,
                                                           weight_decay=config.weight_decay)]
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=config.learning_rate))
    return opts


def _schedule(opt: torch.optim.Optimizer, total: int, warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _save_checkpoint(path: Path, state: dict, on_checkpoint: Callable[[str], None] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    if on_checkpoint is not None:
        on_checkpoint(str(path))


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@dataclass
class TrainState:
    """Everything one epoch advances and a checkpoint holds (``model``/``hint_model`` are the
    DDP wrappers in a multi-process run, else the modules themselves)."""

    student: Student
    hint: nn.Module | None
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LambdaLR]
    device: torch.device
    precision: Precision
    rows: int
    steps_per_epoch: int
    total: int
    result: TrainResult = field(default_factory=TrainResult)
    best_state: dict | None = None
    scaler: torch.amp.GradScaler | None = None
    model: nn.Module | None = None
    hint_model: nn.Module | None = None
    micro_batch: int = 0  # rows per forward pass on this rank (< the batch when it does not fit)
    start_epoch: int = 0
    averaged: nn.Module | None = None  # the weights' moving average (``TrainConfig.ema_decay``), else None

    @property
    def shipped(self) -> Student:
        """The model an epoch is scored on and the run returns: the moving average when there is one."""
        return self.averaged.module if self.averaged is not None else self.student

    @property
    def step(self) -> int:
        return self.result.steps


def prepare(student: Student, rows: int, config: TrainConfig, device: torch.device,
            hint: nn.Module | None = None) -> TrainState:
    """The modules on ``device``, the optimisers and their schedules, nothing trained yet."""
    student.to(device)
    if hint is not None:
        hint.to(device)
    optimizers = _optimizers(student, list(hint.parameters()) if hint is not None else [], config)
    steps_per_epoch = math.ceil(rows / config.batch_size)
    total = steps_per_epoch * config.epochs
    precision = choose_precision(device, student.kind)
    averaged = None
    if config.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averaged = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
    return TrainState(student, hint, optimizers, [_schedule(o, total, config.warmup_fraction) for o in optimizers],
                      device, precision, rows, steps_per_epoch, total, scaler=precision.scaler(device),
                      averaged=averaged)


def restore(state: TrainState, checkpoint: Path | None, config: TrainConfig) -> int:
    """Load the checkpoint when it belongs to this run (same config, same rows); the epochs done."""
    if checkpoint is None or not checkpoint.exists():
        return 0
    saved = torch.load(checkpoint, map_location=state.device, weights_only=True)
    if saved.get("config") != asdict(config) or saved.get("rows") != state.rows:
        return 0
    state.student.load_state_dict(saved["student"])
    if state.hint is not None:
        state.hint.load_state_dict(saved["regressor"])
    for o, s in zip(state.optimizers, saved["optimizers"], strict=True):
        o.load_state_dict(s)
    for sch, s in zip(state.schedulers, saved["schedulers"], strict=True):
        sch.load_state_dict(s)
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    if state.averaged is not None:
        state.averaged.load_state_dict(saved["averaged"])
    result = state.result
    state.start_epoch = result.resumed_from_epoch = int(saved["epoch"])
    result.steps = state.start_epoch * state.steps_per_epoch
    result.epoch_losses = list(saved["epoch_losses"])
    result.history = list(saved.get("history", []))
    result.best_epoch, result.best_score = saved.get("best_epoch"), saved.get("best_score")
    state.best_state = saved.get("best_student")
    return state.start_epoch


def save(state: TrainState, checkpoint: Path, epoch: int, config: TrainConfig,
         on_checkpoint: Callable[[str], None] | None = None) -> None:
    """Write the checkpoint of ``epoch`` epochs done (atomically; rank 0 only in a DDP run)."""
    if not distributed.is_main():
        return
    r = state.result
    _save_checkpoint(checkpoint, {
        "epoch": epoch, "rows": state.rows, "config": asdict(config), "student": state.student.state_dict(),
        "regressor": state.hint.state_dict() if state.hint is not None else {},
        "optimizers": [o.state_dict() for o in state.optimizers],
        "schedulers": [s.state_dict() for s in state.schedulers],
        "scaler": state.scaler.state_dict() if state.scaler is not None else {},
        "averaged": state.averaged.state_dict() if state.averaged is not None else {},
        "epoch_losses": r.epoch_losses, "history": r.history,
        "best_epoch": r.best_epoch, "best_score": r.best_score, "best_student": state.best_state,
    }, on_checkpoint)
