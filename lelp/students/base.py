"""What every student shares: an S*C head, and the inputs it trains on.

A student is an ``nn.Module`` whose ``forward(batch)`` returns ``(logits, hidden)``:
``logits`` has S*C columns (column ``c*S+s``), ``hidden`` is the representation the
head reads (FitNet regresses it onto the teacher embedding). Its inputs live in a
``StudentInputs`` that knows how to cut a batch for any row indices, so the trainer
never needs to know which student it trains.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn


class StudentInputs(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]: ...


class Student(nn.Module):
    """Base class: subclasses set ``kind`` and implement ``forward`` and ``spec``."""

    kind: str = ""
    hidden_size: int = 0
    #: parameters that SparseAdam must update (sparse gradients); everything else uses AdamW
    sparse_parameter_names: tuple[str, ...] = ()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def spec(self) -> dict:
        """The constructor arguments, saved in the artifact so it can be rebuilt."""
        raise NotImplementedError


def csr_rows(indptr: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the chosen CSR rows' entries sit, and each row's start in the batch: an EmbeddingBag's
    (ids, offsets) layout for the rows ``indices`` of a CSR matrix with row pointers ``indptr``."""
    starts, ends = indptr[indices], indptr[indices + 1]
    lengths = ends - starts
    offsets = torch.zeros_like(lengths)
    offsets[1:] = torch.cumsum(lengths, 0)[:-1]
    positions = torch.repeat_interleave(starts - offsets, lengths) + torch.arange(int(lengths.sum()))
    return positions, offsets


def output_layer(student: nn.Module) -> nn.Linear:
    """The S*C output layer: the last ``nn.Linear`` registered (true of every student kind)."""
    return [m for m in student.modules() if isinstance(m, nn.Linear)][-1]


@torch.no_grad()
def fold_temperature(student: nn.Module, tau: float) -> None:
    """Scale the output layer by 1/tau so that plain softmax at inference equals softmax(z/tau).

    A sub-class student is trained to match softmax(z/tau). Its class score is the sum of its
    sub-class probabilities, and that fold depends on the temperature: logsumexp(z/tau) and
    logsumexp(z) can rank classes differently when sub-class logits spread unevenly. Baking
    1/tau into the weights makes every consumer (our predictor, a plain Hugging Face
    ``from_pretrained``, validation) fold at the temperature the student learned.
    """
    layer = output_layer(student)
    layer.weight.div_(tau)
    if layer.bias is not None:
        layer.bias.div_(tau)


@torch.inference_mode()
def predict_class_log_probs(student: nn.Module, inputs: StudentInputs, subclasses: int,
                            device: torch.device = torch.device("cpu"), batch_size: int = 512) -> np.ndarray:
    """(n, C) class log-probabilities of a student over all its inputs, sub-classes folded."""
    from lelp.method.losses import class_log_probs

    student.eval().to(device)
    # inputs that pad their batches (``lengths()``) go shortest first: a batch pads to its own longest row
    order = torch.argsort(inputs.lengths(), stable=True) if hasattr(inputs, "lengths") else torch.arange(len(inputs))
    out = [class_log_probs(student(inputs.batch(order[i:i + batch_size], device))[0].float(), subclasses).cpu().numpy()
           for i in range(0, len(inputs), batch_size)]
    if not out:
        return np.zeros((0, output_layer(student).out_features // subclasses), dtype=np.float32)
    result = np.empty((len(inputs), out[0].shape[1]), dtype=out[0].dtype)
    result[order.numpy()] = np.concatenate(out)
    return result


def count_module_parameters(module: nn.Module) -> int:
    """Parameters of a loaded module (``count_stored_parameters`` reads a directory instead)."""
    return sum(p.numel() for p in module.parameters())


def mlp_head(in_features: int, hidden: int, out_features: int, dropout: float) -> nn.Sequential:
    """Hidden layer + output layer: the ``hidden`` output is taken before the last Linear."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_features))
