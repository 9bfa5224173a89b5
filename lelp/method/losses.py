"""The losses every method trains with: one soft cross-entropy over (sub-)class targets.

A student for a sub-class method has S*C outputs (column ``c*S+s``); its class probability is
the sum of its sub-class probabilities, i.e. its class log-probability is the logsumexp of
its sub-class log-probabilities. With S = 1 everything reduces to Hinton's KD.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_log_probs(logits: torch.Tensor, subclasses: int) -> torch.Tensor:
    """``log p_c = logsumexp_s log_softmax(logits)_{c*S+s}``: fold (B, S*C) into (B, C).

    Used in training (the hard-label term) and at inference (class probabilities).
    """
    log_probs = F.log_softmax(logits, dim=-1)
    if subclasses == 1:
        return log_probs
    if logits.shape[-1] % subclasses:
        raise ValueError(f"{logits.shape[-1]} outputs are not a multiple of subclasses={subclasses}")
    return torch.logsumexp(log_probs.unflatten(-1, (-1, subclasses)), dim=-1)


def distillation_loss(
    student_logits: torch.Tensor,
    targets: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    tau: float,
    subclasses: int,
) -> torch.Tensor:
    """``(1-alpha) tau^2 mean_b CE(t_b, softmax(s_b/tau)) + alpha mean_{labelled b} -log p_{y_b}(s_b)``.

    ``student_logits`` (B, S*C), ``targets`` (B, S*C) probabilities, ``labels`` (B,) with -1 for
    unlabelled rows, which the hard term skips (it is 0 when no row is labelled). The tau^2
    factor keeps the soft term's gradient scale independent of tau (Hinton et al. 2015); the
    hard term uses temperature 1 class log-probabilities from ``class_log_probs``.
    """
    if student_logits.shape != targets.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and targets {tuple(targets.shape)} differ")
    loss = student_logits.new_zeros(())
    if alpha < 1:
        soft = -(targets * F.log_softmax(student_logits / tau, dim=-1)).sum(dim=-1).mean()
        loss = loss + (1.0 - alpha) * tau**2 * soft
    labelled = labels >= 0
    if alpha > 0 and bool(labelled.any()):
        hard = F.nll_loss(class_log_probs(student_logits[labelled], subclasses), labels[labelled])
        loss = loss + alpha * hard
    return loss


def fitnet_loss(student_hidden_projected: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    """``mean ||W_r h_student - h_teacher||^2 / D``: FitNet-style regression onto teacher embeddings.

    The caller owns the linear map ``W_r`` (it trains with the student); this is the MSE.
    """
    return F.mse_loss(student_hidden_projected, teacher_embeddings.to(student_hidden_projected.dtype))


class FitNetHint(nn.Linear):
    """FitNet's hint term as a module: ``fitnet_loss(W_r h, e_rows)`` with the regressor ``W_r``
    (this Linear, trained with the student) and the teacher embeddings ``e`` of the batch's rows.

    A module so that DDP can wrap it and its weights go into the checkpoint (``weight``/``bias``,
    as the plain regressor always did); ``embeddings`` may be a float16 memmap, read per batch.
    """

    def __init__(self, hidden_size: int, embeddings) -> None:
        super().__init__(hidden_size, embeddings.shape[1])
        self.embeddings = embeddings

    def forward(self, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        from lelp.devices.cuda import to_device

        teacher_rows = torch.from_numpy(np.asarray(self.embeddings[rows.cpu().numpy()], dtype=np.float32))
        return fitnet_loss(super().forward(hidden), to_device(teacher_rows, hidden.device))
