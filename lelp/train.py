"""The one training loop every method and student shares.

Determinism is by epoch: each epoch seeds its own shuffle and dropout from
``(seed, epoch)``, so a run resumed from the checkpoint of epoch e takes exactly the
steps an uninterrupted run would have taken. A checkpoint is written (atomically)
after every epoch; a killed job loses at most the epoch in progress.

With a held-out scorer (``evaluate``) every epoch is scored, the best epoch's weights are kept
(in the checkpoint too, so a resumed run keeps the same best) and are what the call returns;
``patience`` epochs without improvement stop the run early. The history
(``[{"epoch", "train_loss", "val_score"}]``) goes into the job's metrics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lelp import distributed
from lelp.gpu import Precision, choose_precision, enable_tf32, fit_batch_size, to_device
from lelp.losses import distillation_loss
from lelp.progress import CancelCheck, Progress, ProgressCallback, check_cancelled, report
from lelp.students.base import Student, StudentInputs, fold_temperature
from lelp.students.base import output_layer as student_output_layer


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


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device) == "gpu":
        if not torch.cuda.is_available():
            from lelp.errors import ConfigError

            raise ConfigError("device 'gpu' was asked for but no CUDA device is available", param="device")
        return torch.device("cuda")
    return torch.device(device)


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


def _score_folded(student: Student, evaluate: Callable[[Student], float], config: TrainConfig) -> float:
    """The held-out score of the model as it would ship (temperature folded), weights untouched."""
    student.eval()
    if config.subclasses > 1 and config.tau != 1.0:
        layer = student_output_layer(student)
        saved = [t.detach().clone() for t in (layer.weight, layer.bias) if t is not None]
        fold_temperature(student, config.tau)
        try:
            return float(evaluate(student))
        finally:
            with torch.no_grad():
                for t, v in zip([t for t in (layer.weight, layer.bias) if t is not None], saved, strict=True):
                    t.copy_(v)
    return float(evaluate(student))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
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
    return TrainState(student, hint, optimizers, [_schedule(o, total, config.warmup_fraction) for o in optimizers],
                      device, precision, rows, steps_per_epoch, total, scaler=precision.scaler(device))


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
        "epoch_losses": r.epoch_losses, "history": r.history,
        "best_epoch": r.best_epoch, "best_score": r.best_score, "best_student": state.best_state,
    }, on_checkpoint)


def _wrap_for_ranks(state: TrainState) -> None:
    """DDP around the student (and the hint) when running under torchrun; else the modules."""
    state.model, state.hint_model = state.student, state.hint
    if not distributed.active():
        return
    from torch.nn.parallel import DistributedDataParallel

    ids = [state.device.index if state.device.index is not None else torch.cuda.current_device()] \
        if state.device.type == "cuda" else None
    state.model = DistributedDataParallel(state.student, device_ids=ids)
    if state.hint is not None:
        state.hint_model = DistributedDataParallel(state.hint, device_ids=ids)


def _rank_rows(batch: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """This rank's rows of a global batch (all of them in one process). A rank left without rows
    trains on one row with weight 0 (``False``), so that it still takes part in the all-reduce."""
    world = distributed.world_size()
    if world == 1:
        return batch, True
    mine = batch[distributed.rank()::world]
    return (mine, True) if len(mine) else (batch[:1], False)


def _chunk_loss(state: TrainState, inputs: StudentInputs, targets: torch.Tensor, labels: torch.Tensor,
                rows: torch.Tensor, config: TrainConfig, model: nn.Module, hint: nn.Module | None) -> torch.Tensor:
    dev = state.device
    on_dev = rows.to(dev) if targets.device.type == "cuda" else rows
    with state.precision.autocast(dev):
        logits, hidden = model(inputs.batch(rows, dev))
        loss = distillation_loss(logits.float(), targets[on_dev].to(dev), labels[on_dev].to(dev),
                                 alpha=config.alpha, tau=config.tau, subclasses=config.subclasses)
        if hint is not None:
            loss = loss + config.fitnet_weight * hint(hidden.float(), rows)
    return loss


def _probe_rows(inputs: StudentInputs, size: int) -> torch.Tensor:
    """The ``size`` longest rows when the inputs know their lengths (what the batch finder must fit)."""
    lengths = getattr(inputs, "row_lengths", None)
    if lengths is None:
        return torch.arange(min(size, len(inputs)))
    return torch.from_numpy(np.argsort(-np.asarray(lengths()), kind="stable")[:size].copy())


def find_micro_batch(state: TrainState, inputs: StudentInputs, targets: torch.Tensor, labels: torch.Tensor,
                     config: TrainConfig) -> int:
    """Rows per forward pass on this rank: the asked batch's share, halved until it fits the GPU
    (found once, on the longest rows; on a CPU the share itself)."""
    share = math.ceil(config.batch_size / distributed.world_size())
    if state.device.type != "cuda":
        return share

    def attempt(size: int) -> None:
        try:
            loss = _chunk_loss(state, inputs, targets, labels, _probe_rows(inputs, size), config,
                               state.student, state.hint)
            loss.backward()
        finally:
            for o in state.optimizers:
                o.zero_grad(set_to_none=True)

    return fit_batch_size(attempt, share)


def train_epoch(state: TrainState, epoch: int, inputs: StudentInputs, targets: torch.Tensor, labels: torch.Tensor,
                config: TrainConfig, *, progress: ProgressCallback | None = None,
                should_cancel: CancelCheck | None = None) -> float:
    """One epoch (0-based ``epoch``), seeded by ``(seed, epoch)``; returns its mean training loss."""
    n = state.rows
    state.model.train()
    seed = config.seed * 100_003 + epoch
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    running, count = 0.0, 0
    world = distributed.world_size()
    for first in range(0, n, config.batch_size):
        if state.step % config.cancel_every == 0 and first:
            check_cancelled(should_cancel)
        batch = order[first:first + config.batch_size]
        mine, counted = _rank_rows(batch)
        chunks = list(torch.split(mine, state.micro_batch or len(mine)))
        for o in state.optimizers:
            o.zero_grad(set_to_none=True)
        for i, rows in enumerate(chunks):
            last = i == len(chunks) - 1
            with nullcontext() if last or state.model is state.student else _no_sync(state):
                loss = _chunk_loss(state, inputs, targets, labels, rows, config, state.model, state.hint_model)
                # chunk mean x (its share of the global batch) x world: DDP's average over ranks
                # then equals the one-process gradient of the whole batch (exactly 1.0 in one pass)
                weight = len(rows) * world / len(batch) if counted else 0.0
                scaled = loss if weight == 1.0 else loss * weight
                (state.scaler.scale(scaled) if state.scaler is not None else scaled).backward()
            if counted:
                running += float(loss.detach()) * len(rows)
                count += len(rows)
        for o, sch in zip(state.optimizers, state.schedulers, strict=True):
            if state.scaler is not None:
                state.scaler.step(o)
            else:
                o.step()
            sch.step()
        if state.scaler is not None:
            state.scaler.update()
        state.result.steps += 1
        report(progress, Progress(stage="train", step=state.step, total=state.total, epoch=epoch + 1,
                                  loss=running / max(count, 1)))
    running, count = distributed.sum_floats(running, count)
    return running / max(count, 1)


@contextmanager
def _no_sync(state: TrainState):
    """No gradient all-reduce for a micro-batch before the last of a step (DDP syncs once a step)."""
    with state.model.no_sync():
        if state.hint_model is not None and state.hint_model is not state.hint:
            with state.hint_model.no_sync():
                yield
        else:
            yield


def train_student(
    student: Student,
    inputs: StudentInputs,
    targets: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    *,
    hint: nn.Module | None = None,
    device: str | torch.device = "auto",
    checkpoint_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_checkpoint: Callable[[str], None] | None = None,
    evaluate: Callable[[Student], float] | None = None,
) -> TrainResult:
    """Train in place: restore the checkpoint, then one ``train_epoch`` + ``save`` per epoch.

    ``hint`` is a method's extra term (FitNet's regressor, ``lelp.targets.build_hint``), trained
    with the student. ``evaluate(student) -> score`` (higher is better), called after every epoch
    on the model as it would ship, selects the best epoch, whose weights the student holds when
    this returns. Under torchrun (``lelp.ddp_launch``) each rank trains on its share of every
    batch with DDP and rank 0 alone writes checkpoints.

    A sub-class student comes back with 1/tau folded into its output layer (see
    ``fold_temperature``): checkpoints hold the unfolded weights, the returned model the folded.
    """
    dev = resolve_device(device)
    enable_tf32(dev)
    state = prepare(student, len(inputs), config, dev, hint)
    targets_t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if dev.type == "cuda":  # small (rows x outputs): on the GPU once, indexed there
        targets_t, labels_t = to_device(targets_t, dev), to_device(labels_t, dev)
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    restore(state, ckpt, config)
    state.micro_batch = find_micro_batch(state, inputs, targets_t, labels_t, config)
    _wrap_for_ranks(state)
    result = state.result
    for epoch in range(state.start_epoch, config.epochs):
        if _patience_spent(result, config):
            result.stopped_early = True
            break
        check_cancelled(should_cancel)
        result.epoch_losses.append(train_epoch(state, epoch, inputs, targets_t, labels_t, config,
                                               progress=progress, should_cancel=should_cancel))
        score = _score_folded(student, evaluate, config) if evaluate is not None else None
        result.history.append({"epoch": epoch + 1, "train_loss": result.epoch_losses[-1], "val_score": score})
        if score is not None and (result.best_score is None or score > result.best_score):
            result.best_epoch, result.best_score = epoch + 1, score
            state.best_state = _cpu_state(student)
        if evaluate is not None:
            report(progress, Progress(stage="train", step=state.step, total=state.total, epoch=epoch + 1,
                                      message=f"held-out score {score:.4f} (best {result.best_score:.4f} "
                                              f"at epoch {result.best_epoch})"))
        if ckpt is not None:
            save(state, ckpt, epoch + 1, config, on_checkpoint)
    if state.best_state is not None and result.best_epoch != result.epochs_run:
        student.load_state_dict(state.best_state)
    student.eval()
    if config.subclasses > 1 and config.tau != 1.0:
        fold_temperature(student, config.tau)
    return result


def _patience_spent(result: TrainResult, config: TrainConfig) -> bool:
    """True when the last ``patience`` scored epochs brought no better held-out score."""
    if config.patience is None or result.best_epoch is None:
        return False
    return result.epochs_run - result.best_epoch >= config.patience
