"""Pseudo-subclass coordinates of teacher embeddings: LELP's projector and a k-means control.

Why LELP looks where it looks: plain KD already transfers the directions of embedding space
that move the logits (the row space of the head weight ``W``). LELP splits each class into
S pseudo sub-classes along the directions in which that class's embeddings vary most
*outside* that row space, so the student is shown structure that KD never shows it.

Memory: fitting streams over row chunks and keeps only ``D x D`` accumulators per class, so a
float16 memmap of a million rows is never copied whole; each chunk is converted on its own.
Inputs may be numpy arrays (memmaps included) or torch tensors; outputs are of the same kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import torch

from lelp.errors import ConfigError, DataError

DEFAULT_CHUNK_ROWS = 65_536
DIRECTIONS = ("pca", "random")
_TINY = 1e-12

Array = Any  # np.ndarray | torch.Tensor; kept loose because memmaps and tensors both qualify


# ----------------------------------------------------------------------------- helpers
def _numpy(x: Array, dtype: type) -> np.ndarray:
    """A whole (small) array as numpy: labels, logits and head weights, never embeddings."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(dtype, copy=False)
    return np.asarray(x, dtype=dtype)


def _chunk_tensor(block: Array) -> torch.Tensor:
    """One chunk of rows as a floating tensor, kept in its own precision; callers never write to it.

    Keeping float16 until after the per-class row gather halves the bytes moved, and torch
    widens half precision several times faster than numpy. A read-only memmap chunk is copied
    as raw bytes first (cheap) because torch wants writable memory.
    """
    if isinstance(block, torch.Tensor):
        return block.detach() if block.is_floating_point() else block.detach().float()
    arr = np.asarray(block)
    if arr.dtype not in (np.float16, np.float32, np.float64) or not arr.dtype.isnative:
        arr = arr.astype(np.float32)
    elif not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


def _chunk_as_float32(block: Array) -> torch.Tensor:
    return _chunk_tensor(block).to(torch.float32)


def _check_embeddings(embeddings: Array, n_features: int | None = None) -> tuple[int, int]:
    shape = tuple(embeddings.shape)
    if len(shape) != 2:
        raise DataError(f"embeddings must be a 2-D (rows, features) array, got shape {shape}")
    if n_features is not None and shape[1] != n_features:
        raise ConfigError(f"embeddings have {shape[1]} features but the projector was fitted on {n_features}")
    return shape[0], shape[1]


def softmax_rows(logits: Array, tau: float = 1.0) -> np.ndarray:
    """``softmax(logits / tau)`` per row, computed in float64 and returned as float32."""
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}", param="tau")
    z = _numpy(logits, np.float64) / tau
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def resolve_labels(labels: Array | None, logits: Array | None, n_rows: int, n_classes: int) -> np.ndarray:
    """Class index per row: the true label, or the teacher's argmax where the label is -1.

    Unlabelled transfer rows still belong to some class's sub-class structure; the teacher's
    own prediction is the only class we have for them.
    """
    y = np.full(n_rows, -1, np.int64) if labels is None else _numpy(labels, np.int64).reshape(-1)
    if y.shape[0] != n_rows:
        raise DataError(f"got {y.shape[0]} labels for {n_rows} rows")
    if (y < -1).any() or (y >= n_classes).any():
        raise DataError(f"labels must be class indices in 0..{n_classes - 1}, or -1 for unlabelled rows")
    missing = y < 0
    if missing.any():
        if logits is None:
            raise ConfigError(
                "some rows are unlabelled (label -1): pass the teacher's logits= so they are "
                "assigned to the teacher's predicted class",
                param="logits",
            )
        teacher = _numpy(logits, np.float32)
        if teacher.shape != (n_rows, n_classes):
            raise DataError(f"logits must have shape ({n_rows}, {n_classes}), got {teacher.shape}")
        y = y.copy()
        y[missing] = teacher[missing].argmax(axis=1)
    return y


def head_bases(weight: Array | None, n_features: int, null_space: bool) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal row bases of the head's row space ``R`` (r, D) and null space ``N`` (D-r, D).

    ``P = I - W^T (W W^T)^+ W = N^T N``; the SVD gives it without forming a pseudo-inverse and
    copes with a rank-deficient ``W``.
    """
    if not null_space:
        return np.zeros((0, n_features)), np.eye(n_features)
    w = _numpy(weight, np.float64)
    if w.ndim != 2 or w.shape[1] != n_features:
        raise ConfigError(f"head weight must have shape (classes, {n_features}), got {w.shape}", param="head_weight")
    _, singular, vh = np.linalg.svd(w, full_matrices=True)
    tol = singular.max(initial=0.0) * max(w.shape) * np.finfo(np.float64).eps
    rank = int((singular > tol).sum())
    return vh[:rank], vh[rank:]


def random_orthonormal(rng: np.random.Generator, rows: int, cols: int | None = None) -> np.ndarray:
    """Haar-random orthonormal columns (a rotation when square): QR of a Gaussian, R's signs fixed.

    Without the sign fix QR's output is not uniformly distributed over rotations.
    """
    q, r = np.linalg.qr(rng.standard_normal((rows, rows if cols is None else cols)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _class_name(class_names: Sequence[str] | None, c: int) -> str:
    return str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)


def check_class_counts(counts: np.ndarray, subclasses: int, class_names: Sequence[str] | None) -> None:
    """Refuse classes too small to estimate S directions (need S + 1 rows, and 2 for a variance)."""
    need = max(subclasses + 1, 2)
    for c, n in enumerate(counts.tolist()):
        if n < need:
            hint = f"or choose subclasses <= {n - 1}" if n >= 2 else "or drop that class"
            raise ConfigError(
                f"class {_class_name(class_names, c)!r} has only {n} rows; subclasses={subclasses} needs "
                f"at least {need} rows per class: add rows of that class {hint}",
                param="subclasses",
            )


def check_dimension(n_features: int, subclasses: int, n_classes: int, null_space: bool) -> None:
    """The null space has D - C dimensions at least: it must hold S directions."""
    need = subclasses + n_classes if null_space else subclasses
    if n_features < need:
        raise ConfigError(
            f"embeddings have {n_features} dimensions but subclasses={subclasses} with {n_classes} classes "
            f"needs at least {need}: choose subclasses <= {max(n_features - (need - subclasses), 0)}",
            param="subclasses",
        )


def _validate(subclasses: int, beta: float) -> None:
    if isinstance(subclasses, bool) or not isinstance(subclasses, int | np.integer) or subclasses < 1:
        raise ConfigError(f"subclasses must be an integer >= 1, got {subclasses!r}", param="subclasses")
    if not beta > 0:
        raise ConfigError(f"beta must be > 0, got {beta}", param="beta")


# ----------------------------------------------------------------------------- shared base
class _SubclassModel:
    """What every sub-class model shares: chunked ``transform`` and the LELP target formula."""

    subclasses: int
    beta: float
    chunk_size: int
    n_features_: int
    n_classes_: int

    def _transform_chunk(self, x: torch.Tensor) -> torch.Tensor:  # (m, D) float32 -> (m, C, S)
        raise NotImplementedError

    def _require_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise ConfigError(f"{type(self).__name__} is not fitted: call fit() first")

    def _map_chunks(self, embeddings: Array, fn: Callable[[torch.Tensor, slice], torch.Tensor], width: tuple) -> Array:
        """Apply ``fn`` chunk by chunk; return numpy for numpy input and torch for torch input."""
        self._require_fitted()
        n, _ = _check_embeddings(embeddings, self.n_features_)
        as_torch = isinstance(embeddings, torch.Tensor)
        device = embeddings.device if as_torch else torch.device("cpu")
        out = torch.empty((n, *width), dtype=torch.float32, device=device)
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n))
            out[rows] = fn(_chunk_as_float32(embeddings[rows]), rows)
        return out if as_torch else out.numpy()

    def transform(self, embeddings: Array) -> Array:
        """Coordinates ``z`` of every row under every class's model: shape (n, C, S), float32."""
        self._require_fitted()
        return self._map_chunks(embeddings, lambda x, _: self._transform_chunk(x), (self.n_classes_, self.subclasses))

    def targets(self, embeddings: Array, logits: Array, tau: float = 1.0) -> Array:
        """``p_{c,s} = softmax(logits/tau)_c * softmax_s(z_{c,s} / beta)``; column ``c*S+s``.

        Each class's teacher probability is split among its S sub-classes, so the S-sums give
        back the teacher's class probabilities and every row sums to 1.
        """
        self._require_fitted()
        probs = softmax_rows(logits, tau)
        if probs.shape != (embeddings.shape[0], self.n_classes_):
            raise DataError(f"logits must have shape ({embeddings.shape[0]}, {self.n_classes_}), got {probs.shape}")
        width = self.n_classes_ * self.subclasses

        def chunk_targets(x: torch.Tensor, rows: slice) -> torch.Tensor:
            sub = torch.softmax(self._transform_chunk(x) / self.beta, dim=-1)
            p = torch.from_numpy(probs[rows]).to(x.device)
            return (p.unsqueeze(-1) * sub).reshape(x.shape[0], width)

        return self._map_chunks(embeddings, chunk_targets, (width,))


# ----------------------------------------------------------------------------- LELP
class LELPProjector(_SubclassModel):
    """Per-class PCA of teacher embeddings in the null space of the head, rotated and scaled.

    ``z_{c,s}(h) = (Q_c V_c P (h - mu_c))_s / scale_c`` with ``P`` the null-space projector,
    ``V_c`` the top-S eigenvectors of ``P Sigma_c P`` (or random orthonormal null-space
    directions for the ``random_subclass`` control), ``Q_c`` a seeded random rotation that
    spreads the variance evenly over the S directions, and ``scale_c`` the class's mean
    coordinate standard deviation so that ``beta`` means the same for every teacher.

    Learned attributes: ``mean_`` (C, D), ``components_`` (C, S, D) = ``Q_c V_c P``,
    ``scale_`` (C,), ``rotation_`` (C, S, S), ``null_projector_`` (D, D), ``counts_`` (C,).
    """

    def __init__(
        self,
        subclasses: int,
        beta: float = 1.0,
        seed: int = 0,
        directions: str = "pca",
        null_space: bool = True,
        chunk_size: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self.subclasses = subclasses
        self.beta = beta
        self.seed = seed
        self.directions = directions
        self.null_space = null_space
        self.chunk_size = chunk_size

    # -- fitting
    def fit(
        self,
        embeddings: Array,
        labels: Array | None,
        weight: Array | None = None,
        *,
        logits: Array | None = None,
        class_names: Sequence[str] | None = None,
    ) -> LELPProjector:
        """Reset, stream ``embeddings`` in chunks through ``partial_fit``, then ``finalize``."""
        self.reset()
        n, _ = _check_embeddings(embeddings)
        labels = np.full(n, -1, np.int64) if labels is None else labels
        if len(labels) != n or (logits is not None and len(logits) != n):
            raise DataError(f"embeddings, labels and logits must have the same number of rows ({n})")
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, n))
            chunk_logits = None if logits is None else logits[rows]
            self.partial_fit(embeddings[rows], labels[rows], weight, logits=chunk_logits)
        return self.finalize(class_names=class_names)

    def reset(self) -> None:
        """Forget the accumulated statistics (``fit`` calls this first)."""
        self.__dict__.pop("_sum", None)

    def _start(self, n_features: int, weight: Array | None, logits: Array | None) -> None:
        _validate(self.subclasses, self.beta)
        if self.directions not in DIRECTIONS:
            raise ConfigError(f"directions must be one of {DIRECTIONS}, got {self.directions!r}", param="directions")
        if self.null_space and weight is None:
            raise ConfigError("null_space=True needs the teacher head's weight (classes, D)", param="head_weight")
        if weight is not None:
            n_classes = int(weight.shape[0])
        elif logits is not None:
            n_classes = int(logits.shape[1])
        else:
            raise ConfigError("pass weight= or logits= so the number of classes is known")
        check_dimension(n_features, self.subclasses, n_classes, self.null_space)
        _, self._null_basis = head_bases(weight, n_features, self.null_space)
        self.n_features_, self.n_classes_ = n_features, n_classes
        self._count = np.zeros(n_classes, np.int64)
        self._shift = torch.zeros(n_classes, n_features, dtype=torch.float64)
        self._sum = torch.zeros(n_classes, n_features, dtype=torch.float64)
        self._outer = torch.zeros(n_classes, n_features, n_features, dtype=torch.float64)

    def partial_fit(
        self, embeddings: Array, labels: Array | None, weight: Array | None = None, *, logits: Array | None = None
    ) -> LELPProjector:
        """Add one chunk of rows to the per-class sums; call ``finalize`` when all are in.

        Each class's rows are shifted by that class's first-chunk mean before the float32
        ``X^T X`` (one matmul per class per chunk) so that the float64 accumulators do not
        lose the covariance to cancellation against a large mean.
        """
        started = hasattr(self, "_sum")
        n, d = _check_embeddings(embeddings, self.n_features_ if started else None)
        if not started:
            self._start(d, weight, logits)
        y = resolve_labels(labels, logits, n, self.n_classes_)
        x = _chunk_tensor(embeddings)
        for c in np.unique(y).tolist():
            members = torch.from_numpy(np.flatnonzero(y == c)).to(x.device)
            xc = x.index_select(0, members).to(torch.float32)  # a fresh copy: safe to shift in place
            if self._count[c] == 0:
                self._shift[c] = xc.mean(dim=0).to(device="cpu", dtype=torch.float64)
            xc -= self._shift[c].to(device=x.device, dtype=torch.float32)
            self._sum[c] += xc.sum(dim=0).to(device="cpu", dtype=torch.float64)  # float32 sum: 20x faster
            self._outer[c] += (xc.T @ xc).to(device="cpu", dtype=torch.float64)
            self._count[c] += members.numel()
        return self

    def finalize(self, class_names: Sequence[str] | None = None) -> LELPProjector:
        """Turn the accumulated sums into the per-class means, directions, rotations and scales."""
        if not hasattr(self, "_sum"):
            raise ConfigError("no rows to fit the projector on")
        check_class_counts(self._count, self.subclasses, class_names)
        if not (torch.isfinite(self._sum).all() and torch.isfinite(self._outer).all()):
            raise DataError("embeddings contain NaN or infinite values")
        rng = np.random.default_rng(self.seed)
        null = self._null_basis
        projector = null.T @ null
        s, c_total, d = self.subclasses, self.n_classes_, self.n_features_
        self.mean_ = np.empty((c_total, d))
        self.components_ = np.empty((c_total, s, d))
        self.rotation_ = np.empty((c_total, s, s))
        self.scale_ = np.empty(c_total)
        for c in range(c_total):
            n = float(self._count[c])
            total, outer = self._sum[c].numpy(), self._outer[c].numpy()
            cov = (outer - np.outer(total, total) / n) / (n - 1.0)
            cov = (cov + cov.T) / 2.0
            directions = self._directions(cov, null, rng)
            rotation = random_orthonormal(rng, s)
            components = rotation @ directions @ projector
            variances = np.einsum("sd,de,se->s", components, cov, components)
            scale = float(np.sqrt(max(variances.mean(), 0.0)))
            self.mean_[c] = self._shift[c].numpy() + total / n
            self.components_[c], self.rotation_[c] = components, rotation
            self.scale_[c] = scale if scale > _TINY else 1.0  # no variance: every sub-class equal
        self.null_projector_ = projector
        self.counts_ = self._count.copy()
        self._prepare_transform()
        return self

    def _directions(self, cov: np.ndarray, null: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """S orthonormal null-space directions (rows, in D coordinates): top PCA or random."""
        s = self.subclasses
        if self.directions == "random":
            basis = random_orthonormal(rng, null.shape[0], s)
        else:
            k = null.shape[0]  # only the top S eigenpairs: skips most of a full eigh's work
            _, vectors = scipy.linalg.eigh(null @ cov @ null.T, subset_by_index=[k - s, k - 1])
            basis = vectors[:, ::-1]
            # eigh's signs are arbitrary; fixing them keeps results identical across BLAS builds.
            basis = basis * np.where(basis[np.abs(basis).argmax(axis=0), range(s)] < 0, -1.0, 1.0)
        return basis.T @ null

    def _prepare_transform(self) -> None:
        """Fold the centring and scaling into one (C*S, D) matrix and one offset per coordinate."""
        scaled = self.components_ / self.scale_[:, None, None]
        self._matrix = torch.from_numpy(scaled.reshape(-1, self.n_features_).astype(np.float32))
        self._offset = torch.from_numpy(np.einsum("csd,cd->cs", scaled, self.mean_).reshape(-1).astype(np.float32))

    def _transform_chunk(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self._matrix.to(x.device).T - self._offset.to(x.device)
        return z.reshape(x.shape[0], self.n_classes_, self.subclasses)
