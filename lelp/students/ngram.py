"""fastText-style student: hashed unigrams and bigrams, an EmbeddingBag, a small MLP.

The table is large (2^18 rows) and each sentence touches a few dozen of them, so it
trains with sparse gradients (SparseAdam): dense Adam over the whole table is the
slow part otherwise. Hashing is scikit-learn's ``HashingVectorizer`` (MurmurHash3 in
C): the same spec, saved in the artifact, gives the same ids at serving time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from lelp.errors import ConfigError
from lelp.students.base import Student, csr_rows, mlp_head

# The hashing is torch-free (lelp.students.hashing) so that onnxruntime serving does not load torch.
from lelp.students.hashing import PAIR_SEPARATOR, FastHasher, HashingSpec, join_pairs  # noqa: F401
from lelp.students.kind import StudentKind


class HashedInputs:
    """Hashed n-gram rows as one CSR matrix; a batch is (ids, offsets, weights)."""

    def __init__(self, spec: HashingSpec, texts: Sequence[str], text_pairs: Sequence[str] | None = None):
        matrix = spec.vectorizer().transform(join_pairs(texts, text_pairs)).tocsr()
        matrix.sort_indices()
        self.indptr = torch.from_numpy(matrix.indptr.astype(np.int64))
        self.indices = torch.from_numpy(matrix.indices.astype(np.int64))
        self.data = torch.from_numpy(matrix.data.astype(np.float32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        positions, offsets = csr_rows(self.indptr, indices)
        return {"ids": self.indices[positions].to(device), "offsets": offsets.to(device),
                "weights": self.data[positions].to(device)}


class NgramStudent(Student):
    kind = "ngram"
    sparse_parameter_names = ("embedding.weight",)

    def __init__(self, num_outputs: int, *, n_features: int = 2**18, embedding_dim: int = 64,
                 hidden: int = 128, dropout: float = 0.1, hashing: dict | None = None):
        super().__init__()
        self.hashing = HashingSpec(**(hashing or {"n_features": n_features}))
        self.num_outputs, self.embedding_dim, self.dropout = num_outputs, embedding_dim, dropout
        self.hidden_size = hidden
        self.embedding = nn.EmbeddingBag(self.hashing.n_features, embedding_dim, mode="sum", sparse=True)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.head = mlp_head(embedding_dim, hidden, num_outputs, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        bag = self.embedding(batch["ids"], batch["offsets"], per_sample_weights=batch["weights"])
        hidden = self.head[:-1](bag)
        return self.head[-1](hidden), hidden

    def make_inputs(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> HashedInputs:
        return HashedInputs(self.hashing, texts, text_pairs)

    def spec(self) -> dict:
        return {"num_outputs": self.num_outputs, "embedding_dim": self.embedding_dim, "hidden": self.hidden_size,
                "dropout": self.dropout, "hashing": asdict(self.hashing)}


class NgramKind(StudentKind):
    student_class = NgramStudent
    name = "ngram"

    def inputs(self, texts, text_pairs, dataset_sha256):
        spec = HashingSpec(n_features=self.ctx.options.get("n_features", 2**18))
        return HashedInputs(spec, texts, text_pairs)

    def build(self, num_outputs, labels, subclasses):
        try:
            return NgramStudent(num_outputs, **self.ctx.options)
        except TypeError as exc:
            raise ConfigError(f"bad student option for ngram: {exc}", param="student_options") from None

    @classmethod
    def load(cls, path, manifest):
        from safetensors.torch import load_file

        from lelp.artifacts import StudentPredictor

        student = NgramStudent(**manifest["spec"])
        student.load_state_dict(load_file(str(path / "model.safetensors")))
        return StudentPredictor(student, manifest, student.make_inputs)
