"""fastText-style student: hashed unigrams and bigrams, an EmbeddingBag, a small MLP.

The table is large (2^18 rows) and each sentence touches a few dozen of them, so it
trains with sparse gradients (SparseAdam): dense Adam over the whole table is the
slow part otherwise. Hashing is scikit-learn's ``HashingVectorizer`` (MurmurHash3 in
C): the same spec, saved in the artifact, gives the same ids at serving time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from lelp.errors import ConfigError
from lelp.students.base import Student, csr_rows, mlp_head
from lelp.students.kind import StudentKind

PAIR_SEPARATOR = " [SEP] "


@dataclass(frozen=True)
class HashingSpec:
    n_features: int = 2**18
    ngram_min: int = 1
    ngram_max: int = 2
    lowercase: bool = True
    token_pattern: str = r"(?u)\b\w+\b|[!?]"

    def vectorizer(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(n_features=self.n_features, ngram_range=(self.ngram_min, self.ngram_max),
                                 lowercase=self.lowercase, token_pattern=self.token_pattern,
                                 alternate_sign=False, norm="l1", dtype=np.float32)


class FastHasher:
    """``HashingSpec.vectorizer().transform`` without its per-call overhead, for serving.

    The same scikit-learn pieces (its analyzer, its ``FeatureHasher``, MurmurHash3 in C)
    give the same ids and counts; only the L1 row normalisation is done here in numpy.
    ``HashingVectorizer.transform`` spent two thirds of a one-sentence call validating its
    input and parameters (0.8 ms of 1.2 ms, cProfile), on the event loop's critical path.
    """

    def __init__(self, spec: HashingSpec):
        from sklearn.feature_extraction import FeatureHasher

        self.analyzer = spec.vectorizer().build_analyzer()
        self.hasher = FeatureHasher(n_features=spec.n_features, input_type="string", alternate_sign=False,
                                    dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, data) of the L1-normalised CSR rows, indices sorted within each row."""
        matrix = self.hasher.transform(self.analyzer(text) for text in texts)
        matrix.sort_indices()
        counts = np.diff(matrix.indptr)
        sums = np.add.reduceat(matrix.data, matrix.indptr[:-1][counts > 0]) if len(matrix.data) else matrix.data
        data = matrix.data / np.repeat(sums, counts[counts > 0])
        return matrix.indptr, matrix.indices, data.astype(np.float32, copy=False)


def join_pairs(texts: Sequence[str], text_pairs: Sequence[str] | None) -> list[str]:
    if text_pairs is None:
        return list(texts)
    return [a + PAIR_SEPARATOR + b for a, b in zip(texts, text_pairs, strict=True)]


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
