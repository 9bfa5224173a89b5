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

    def lengths(self) -> torch.Tensor:
        """Tokens per row: ``predict_class_log_probs`` batches rows of similar length together."""
        return self.indptr[1:] - self.indptr[:-1]

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
        self.folded: list[torch.Tensor] | None = None  # see fold(): inference only, never saved

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["mask"].to(self.norm.weight.dtype)
        count = mask.sum(1, keepdim=True).clamp(min=1.0)
        if self.folded is not None and not self.training:
            mean = nn.functional.embedding_bag(batch["ids"], self.embeddings.weight, mode="sum",
                                               per_sample_weights=mask) / count
            responses = self._folded_responses(batch["ids"], batch["mask"])
        else:
            x = self.embeddings(batch["ids"]) * mask[:, :, None]  # (B, L, D), padding zeroed
            mean = x.sum(1) / count
            responses = self._packed_responses(x, batch["mask"]) if self.training else self._padded_responses(x)
        # ReLU >= 0, so zeroing the padded positions before the max never changes it (an empty row gives 0)
        pooled = [(torch.relu(r) * mask[:, :, None]).amax(1) for r in responses]
        features = torch.cat([self.norm(mean), self.conv_norm(torch.cat(pooled, -1))], -1)
        hidden = self.head[:-1](features)
        return self.head[-1](hidden), hidden

    def _padded_responses(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each filter's response at every position of the padded (B, L, D) batch: (B, L, F) per width."""
        xt, width = x.transpose(1, 2), x.shape[1]
        return [conv(xt)[:, :, :width].transpose(1, 2) for conv in self.convs]

    def _packed_responses(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """``_padded_responses`` computed on the batch's real tokens only (training's hot path).

        A random batch is as wide as its longest row: on SST-2 with variants, 4.2 padded positions per
        real token, and the convolution (with its backward, two thirds of an epoch) paid for every one.
        Here the rows are laid end to end in one sequence, ``gap`` zeros before, between and after them
        (as many as a filter reaches past a row's end), so each token's window sees exactly what it
        sees in its padded row; the responses are then read back into the (B, L, F) layout (padded
        slots read a gap and are masked by the caller as before). Same sums, one long convolution.
        """
        rows, width, dim = x.shape
        valid = mask.bool()
        lengths = valid.sum(1)
        gap = max(max(c.padding[0], c.kernel_size[0] - 1 - c.padding[0]) for c in self.convs)
        starts = gap * torch.arange(1, rows + 1, device=x.device) + torch.cumsum(lengths, 0) - lengths
        positions = starts[:, None] + torch.arange(width, device=x.device)[None, :]  # (B, L): valid where mask
        total = max(1, int(starts[-1] + lengths[-1]) + gap if rows else gap)  # never an empty sequence
        packed = x.new_zeros(total, dim).index_put((positions[valid],), x[valid])
        gather = positions.clamp(max=total - 1)
        return [conv(packed.T[None])[0].T[gather] for conv in self.convs]

    @torch.no_grad()
    def fold(self) -> None:
        """Precompute every token's response to every filter tap: one (V + 1, width * F) table per width.

        The convolution is linear in the embeddings, so at inference a filter's response is then
        the sum of ``width`` gathered rows (row V, all zeros, stands for padding): gathers and adds
        instead of a D x F product per tap and token, the same numbers to float rounding at a
        fraction of the CPU time. Costs (V + 1) x F x width floats of memory; training and
        ``unfold()`` use the convolution itself.
        """
        table = self.embeddings.weight
        self.folded = []
        for conv in self.convs:
            taps = torch.einsum("vd,fdk->vkf", table, conv.weight).reshape(len(table), -1)
            self.folded.append(torch.cat([taps, taps.new_zeros(1, taps.shape[1])]).contiguous())

    def unfold(self) -> None:
        self.folded = None

    def _folded_responses(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        rows, width = ids.shape
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, self.vocab_size))  # padding -> the zero row
        out = []
        for conv, taps in zip(self.convs, self.folded, strict=True):
            w, pad = conv.kernel_size[0], conv.padding[0]
            gathered = nn.functional.embedding(nn.functional.pad(ids, (pad, w - 1 - pad), value=self.vocab_size),
                                               taps).view(rows, width + w - 1, w, self.filters)
            response = conv.bias + gathered[:, 0:width, 0]
            for j in range(1, w):  # tap j sees token t + j - pad, as Conv1d with this padding does
                response = response + gathered[:, j:j + width, j]
            out.append(response)  # (B, L, F)
        return out

    def spec(self) -> dict:
        return {"num_outputs": self.num_outputs, "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
                "filters": self.filters, "widths": self.widths, "hidden": self.hidden_size, "dropout": self.dropout}


class CnnKind(StaticKind):
    """``static``'s table, tokenizer, artifact and loading; a ``CnnStudent`` on padded batches."""

    student_class = CnnStudent
    name = "cnn"
    inputs_class = PaddedTokenInputs

    @classmethod
    def load(cls, path, manifest):
        predictor = super().load(path, manifest)
        predictor.student.fold()  # serving: the convolution as table lookups (see CnnStudent.fold)
        return predictor

    readme_note = """
The token table is also a model2vec `StaticModel` (`StaticModel.from_pretrained(dir)` gives the
mean of the fine-tuned token rows, one of the two inputs of the head); the convolution
(`convs.*`), the norms and the head in model.safetensors complete the student.
"""
