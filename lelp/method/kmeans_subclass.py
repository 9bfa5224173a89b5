"""The k-means control: pseudo-subclasses from k-means clusters of each class's embeddings.

Same contract as ``LELPProjector`` (fit / transform / targets), so the target builders and the
benchmark treat it as one more way to split a class; it exists to test whether LELP's linear
directions matter more than any reasonable partition of a class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lelp.errors import ConfigError
from lelp.method.projection import (
    _TINY,
    DEFAULT_CHUNK_ROWS,
    Array,
    _check_embeddings,
    _chunk_as_float32,
    _SubclassModel,
    _validate,
    check_class_counts,
    check_dimension,
    head_bases,
    resolve_labels,
)


class KMeansSubclasser(_SubclassModel):
    """The ``kmeans_subclass`` control: S k-means clusters per class instead of projections.

    ``z_{c,s}(h) = -||P h - centroid_{c,s}||^2 / scale_c`` where ``scale_c`` is the class's mean
    squared distance to its own centroid, so ``softmax_s(z / beta)`` is a soft cluster
    membership with a unit-free ``beta``. Each class is clustered on at most
    ``max_rows_per_class`` seeded-sampled rows, which bounds the memory k-means needs.
    Learned attributes: ``centroids_`` (C, S, D), ``scale_`` (C,), ``null_projector_``, ``counts_``.
    """

    def __init__(
        self,
        subclasses: int,
        beta: float = 1.0,
        seed: int = 0,
        max_rows_per_class: int = 50_000,
        chunk_size: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self.subclasses = subclasses
        self.beta = beta
        self.seed = seed
        self.max_rows_per_class = max_rows_per_class
        self.chunk_size = chunk_size

    def fit(
        self,
        embeddings: Array,
        labels: Array | None,
        weight: Array | None = None,
        logits: Array | None = None,
        class_names: Sequence[str] | None = None,
    ) -> KMeansSubclasser:
        """Cluster each class's (null-space projected) rows into S groups."""
        from sklearn.cluster import KMeans

        _validate(self.subclasses, self.beta)
        n, d = _check_embeddings(embeddings)
        if weight is None and logits is None:
            raise ConfigError("pass weight= or logits= so the number of classes is known")
        n_classes = int(weight.shape[0] if weight is not None else logits.shape[1])
        if weight is not None:
            check_dimension(d, self.subclasses, n_classes, null_space=True)
        y = resolve_labels(labels, logits, n, n_classes)
        counts = np.bincount(y, minlength=n_classes)
        check_class_counts(counts, self.subclasses, class_names)
        row_basis, null = head_bases(weight, d, null_space=weight is not None)
        self.n_features_, self.n_classes_ = d, n_classes
        self._row_basis = torch.from_numpy(row_basis.astype(np.float32))
        rng = np.random.default_rng(self.seed)
        self.centroids_ = np.empty((n_classes, self.subclasses, d), np.float32)
        self.scale_ = np.empty(n_classes)
        for c in range(n_classes):
            members = np.flatnonzero(y == c)
            if members.size > self.max_rows_per_class:
                members = np.sort(rng.choice(members, self.max_rows_per_class, replace=False))
            index = torch.from_numpy(members) if isinstance(embeddings, torch.Tensor) else members
            rows = self._project(_chunk_as_float32(embeddings[index])).cpu().numpy()
            km = KMeans(self.subclasses, n_init=3, random_state=int(rng.integers(2**31 - 1))).fit(rows)
            self.centroids_[c] = km.cluster_centers_
            spread = km.inertia_ / len(rows)
            self.scale_[c] = spread if spread > _TINY else 1.0
        self.null_projector_ = null.T @ null
        self.counts_ = counts
        return self

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        basis = self._row_basis.to(x.device)
        return x - (x @ basis.T) @ basis

    def _transform_chunk(self, x: torch.Tensor) -> torch.Tensor:
        xp = self._project(x)
        centroids = torch.from_numpy(self.centroids_.reshape(-1, self.n_features_)).to(x.device)
        dist = (xp * xp).sum(1, keepdim=True) - 2.0 * xp @ centroids.T + (centroids * centroids).sum(1)
        dist = dist.clamp_min(0.0).reshape(x.shape[0], self.n_classes_, self.subclasses)
        return -dist / torch.from_numpy(self.scale_.astype(np.float32)).to(x.device)[:, None]
