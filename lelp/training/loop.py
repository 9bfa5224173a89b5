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
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lelp.devices import distributed
from lelp.devices.cuda import enable_tf32, fit_batch_size, to_device
from lelp.devices.resolve import resolve_device
from lelp.method.losses import distillation_loss
from lelp.progress import CancelCheck, Progress, ProgressCallback, check_cancelled, report
from lelp.students.base import Student, StudentInputs, fold_temperature
from lelp.students.base import output_layer as student_output_layer
from lelp.training.state import TrainConfig, TrainResult, TrainState, cpu_state, prepare, restore, save

__all__ = ["TrainConfig", "TrainResult", "TrainState", "find_micro_batch", "prepare", "resolve_device", "restore",
           "save", "train_epoch", "train_student"]




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
        if state.averaged is not None:
            state.averaged.update_parameters(state.student)
        state.result.steps += 1
        report(progress, Progress(stage="train", step=state.step, total_steps=state.total, epoch=epoch + 1,
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

    ``hint`` is a method's extra term (FitNet's regressor, ``lelp.method.targets.build_hint``), trained
    with the student. ``evaluate(student) -> score`` (higher is better), called after every epoch
    on the model as it would ship, selects the best epoch, whose weights the student holds when
    this returns. Under torchrun (``lelp.devices.ddp_launch``) each rank trains on its share of every
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
        score = _score_folded(state.shipped, evaluate, config) if evaluate is not None else None
        result.history.append({"epoch": epoch + 1, "train_loss": result.epoch_losses[-1], "val_score": score})
        if score is not None and (result.best_score is None or score > result.best_score):
            result.best_epoch, result.best_score = epoch + 1, score
            state.best_state = cpu_state(state.shipped)
        if evaluate is not None:
            report(progress, Progress(stage="train", step=state.step, total_steps=state.total, epoch=epoch + 1,
                                      val_score=score,
                                      message=f"held-out score {score:.4f} (best {result.best_score:.4f} "
                                              f"at epoch {result.best_epoch})"))
        if ckpt is not None:
            save(state, ckpt, epoch + 1, config, on_checkpoint)
    if state.best_state is not None and (result.best_epoch != result.epochs_run or state.averaged is not None):
        student.load_state_dict(state.best_state)
    elif state.averaged is not None:  # no held-out scorer: the average of the last epoch
        student.load_state_dict(state.averaged.module.state_dict())
    student.eval()
    if config.subclasses > 1 and config.tau != 1.0:
        fold_temperature(student, config.tau)
    return result


def _patience_spent(result: TrainResult, config: TrainConfig) -> bool:
    """True when the last ``patience`` scored epochs brought no better held-out score."""
    if config.patience is None or result.best_epoch is None:
        return False
    return result.epochs_run - result.best_epoch >= config.patience
