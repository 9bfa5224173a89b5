"""CNN student: the static student's teacher-distilled token table, + a 1-D convolution over it.

Mean-pooled static embeddings cannot see word order ("not good" and "good, not" pool to the
same vector). A narrow convolution over the same table (Kim, 2014: filters over a few tokens,
max-pooled over the sentence) sees every local n-gram, negations included, for a small cost
per token. The sentence vector is the static student's normalised mean *and* the max-pooled
filter responses; the MLP head gives the S*C outputs and everything, table included, is
fine-tuned with the distillation targets (sparse table gradients, as for ``static``).

The table (model2vec's recipe from the teacher's encoder, cached), the tokenizer, the artifact
layout (``model.safetensors`` with the table as ``embeddings``, so the directory also loads as
a model2vec ``StaticModel``) and the loading are ``lelp.students.static``'s; only the module
and the padded batches are new here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lelp.students.base import Student, mlp_head
from lelp.students.static import StaticInputs, StaticKind


class PaddedTokenInputs(StaticInputs):
    """The static student's token ids (no special tokens), cut into padded (ids, mask) batches."""

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        starts = self.indptr[indices]
        lengths = self.indptr[indices + 1] - starts
        width = max(1, int(lengths.max())) if len(indices) else 1  # an empty row still gets a column
        columns = torch.arange(width)
        mask = columns[None, :] < lengths[:, None]
        positions = (starts[:, None] + columns[None, :]).clamp(max=max(len(self.indices) - 1, 0))
        ids = self.indices[positions] if len(self.indices) else torch.zeros_like(positions)
        ids = torch.where(mask, ids, torch.zeros_like(ids))
        return {"ids": ids.to(device), "mask": mask.to(torch.int64).to(device)}


class CnnStudent(Student):
    kind = "cnn"
    sparse_parameter_names = ("embeddings.weight",)

    def __init__(self, num_outputs: int, *, vocab_size: int, embedding_dim: int, filters: int = 128,
                 widths: Sequence[int] = (3,), hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.num_outputs, self.vocab_size, self.embedding_dim = num_outputs, vocab_size, embedding_dim
        self.filters, self.widths = int(filters), [int(w) for w in widths]
        self.hidden_size, self.dropout = hidden, dropout
        if not self.widths or min(self.widths) < 1 or self.filters < 1:
            raise TypeError("widths must be a non-empty list of positive integers and filters positive")
        self.embeddings = nn.Embedding(vocab_size, embedding_dim, sparse=True)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, self.filters, w, padding=w // 2) for w in self.widths)
        self.norm = nn.LayerNorm(embedding_dim)
        self.conv_norm = nn.LayerNorm(self.filters * len(self.widths))
        self.head = mlp_head(embedding_dim + self.filters * len(self.widths), hidden, num_outputs, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["mask"].to(self.norm.weight.dtype)
        x = self.embeddings(batch["ids"]) * mask[:, :, None]  # (B, L, D), padding zeroed
        mean = x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        width = x.shape[1]
        xt = x.transpose(1, 2)
        # ReLU >= 0, so zeroing the padded positions before the max never changes it (an empty row gives 0)
        pooled = [(torch.relu(conv(xt)[:, :, :width]) * mask[:, None, :]).amax(-1) for conv in self.convs]
        features = torch.cat([self.norm(mean), self.conv_norm(torch.cat(pooled, -1))], -1)
        hidden = self.head[:-1](features)
        return self.head[-1](hidden), hidden

    def spec(self) -> dict:
        return {"num_outputs": self.num_outputs, "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "filters": self.filters, "widths": self.widths, "hidden": self.hidden_size, "dropout": self.dropout}


class CnnKind(StaticKind):
    """``static``'s table, tokenizer, artifact and loading; a ``CnnStudent`` on padded batches."""

    student_class = CnnStudent
    name = "cnn"
    inputs_class = PaddedTokenInputs

    readme_note = """
The token table is also a model2vec `StaticModel` (`StaticModel.from_pretrained(dir)` gives the
mean of the fine-tuned token rows, one of the two inputs of the head); the convolution
(`convs.*`), the norms and the head in model.safetensors complete the student.
"""
