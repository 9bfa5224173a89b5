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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lelp.devices import resolve_device
from lelp.losses import distillation_loss, fitnet_loss
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


def train_student(
    student: Student,
    inputs: StudentInputs,
    targets: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    *,
    teacher_embeddings: np.ndarray | None = None,
    device: str | torch.device = "auto",
    checkpoint_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_checkpoint: Callable[[str], None] | None = None,
    evaluate: Callable[[Student], float] | None = None,
) -> TrainResult:
    """Train in place. ``teacher_embeddings`` switches on the FitNet regression term.

    ``evaluate(student) -> score`` (higher is better), called after every epoch on the model as it
    would ship, selects the best epoch, whose weights the student holds when this returns.

    A sub-class student comes back with 1/tau folded into its output layer (see
    ``fold_temperature``): checkpoints hold the unfolded weights, the returned model the folded.
    """
    dev = resolve_device(device)
    n = len(inputs)
    student.to(dev)
    regressor = None
    if teacher_embeddings is not None:
        regressor = nn.Linear(student.hidden_size, teacher_embeddings.shape[1]).to(dev)
    extra = list(regressor.parameters()) if regressor is not None else []
    optimizers = _optimizers(student, extra, config)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    schedulers = [_schedule(o, total, config.warmup_fraction) for o in optimizers]
    targets_t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    result = TrainResult()
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    start_epoch = 0
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state.get("config") == asdict(config) and state.get("rows") == n:
            student.load_state_dict(state["student"])
            if regressor is not None:
                regressor.load_state_dict(state["regressor"])
            for o, s in zip(optimizers, state["optimizers"], strict=True):
                o.load_state_dict(s)
            for sch, s in zip(schedulers, state["schedulers"], strict=True):
                sch.load_state_dict(s)
            start_epoch = int(state["epoch"])
            result.epoch_losses = list(state["epoch_losses"])
            result.history = list(state.get("history", []))
            result.best_epoch, result.best_score = state.get("best_epoch"), state.get("best_score")
            best_state = state.get("best_student")
            result.resumed_from_epoch = start_epoch
    else:
        best_state = None
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        if _patience_spent(result, config):
            result.stopped_early = True
            break
        check_cancelled(should_cancel)
        student.train()
        seed = config.seed * 100_003 + epoch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        running, count = 0.0, 0
        for first in range(0, n, config.batch_size):
            if step % config.cancel_every == 0 and first:
                check_cancelled(should_cancel)
            idx = order[first:first + config.batch_size]
            logits, hidden = student(inputs.batch(idx, dev))
            loss = distillation_loss(logits, targets_t[idx].to(dev), labels_t[idx].to(dev),
                                     alpha=config.alpha, tau=config.tau, subclasses=config.subclasses)
            if regressor is not None:
                teacher_rows = torch.from_numpy(np.asarray(teacher_embeddings[idx.numpy()], dtype=np.float32))
                loss = loss + config.fitnet_weight * fitnet_loss(regressor(hidden), teacher_rows.to(dev))
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o, sch in zip(optimizers, schedulers, strict=True):
                o.step()
                sch.step()
            step += 1
            running += float(loss.detach()) * len(idx)
            count += len(idx)
            report(progress, Progress(stage="train", step=step, total_steps=total, epoch=epoch + 1,
                                      loss=running / count))
        result.epoch_losses.append(running / max(count, 1))
        score = _score_folded(student, evaluate, config) if evaluate is not None else None
        result.history.append({"epoch": epoch + 1, "train_loss": result.epoch_losses[-1], "val_score": score})
        if score is not None and (result.best_score is None or score > result.best_score):
            result.best_epoch, result.best_score = epoch + 1, score
            best_state = _cpu_state(student)
        if evaluate is not None:
            report(progress, Progress(stage="train", step=step, total_steps=total, epoch=epoch + 1,
                                      message=f"held-out score {score:.4f} (best {result.best_score:.4f} "
                                              f"at epoch {result.best_epoch})"))
        if ckpt is not None:
            _save_checkpoint(ckpt, {
                "epoch": epoch + 1, "rows": n, "config": asdict(config), "student": student.state_dict(),
                "regressor": regressor.state_dict() if regressor is not None else {},
                "optimizers": [o.state_dict() for o in optimizers],
                "schedulers": [s.state_dict() for s in schedulers],
                "epoch_losses": result.epoch_losses, "history": result.history,
                "best_epoch": result.best_epoch, "best_score": result.best_score, "best_student": best_state,
            }, on_checkpoint)
    result.steps = step
    if best_state is not None and result.best_epoch != result.epochs_run:
        student.load_state_dict(best_state)
    student.eval()
    if config.subclasses > 1 and config.tau != 1.0:
        fold_temperature(student, config.tau)
    return result


def _patience_spent(result: TrainResult, config: TrainConfig) -> bool:
    """True when the last ``patience`` scored epochs brought no better held-out score."""
    if config.patience is None or result.best_epoch is None:
        return False
    return result.epochs_run - result.best_epoch >= config.patience
