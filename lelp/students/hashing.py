"""The n-gram student's hashing, torch-free: the ONNX runtime featurises with it without loading torch.

(It loaded torch through ``lelp.students.ngram``: 3-4 s of the first predict on an ngram model.)
Hashing is scikit-learn's ``HashingVectorizer`` (MurmurHash3 in C): the same spec, saved in the
artifact, gives the same ids at serving time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
