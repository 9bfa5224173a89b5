"""The training targets of each method: one small builder per method, picked by a plain dict.

Every builder returns probabilities, (n, K) float32, with K = C for the class-level methods
and K = S*C (column ``c*S+s``) for the sub-class methods, so one cross-entropy loss
(``lelp.method.losses.distillation_loss``) trains every method.

Embeddings may be a float16 memmap of millions of rows: the fitted models stream it in
chunks and never copy it whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lelp.errors import ConfigError
from lelp.method.kmeans_subclass import KMeansSubclasser
from lelp.method.losses import FitNetHint
from lelp.method.projection import LELPProjector, resolve_labels, softmax_rows
from lelp.method.registry import SUBCLASS_METHODS, Method, parse_method  # noqa: F401 - re-exported

Targets = tuple[np.ndarray, int, object | None]  # (targets, subclasses used, fitted model or None)


@dataclass(frozen=True)
class TargetInputs:
    """What a builder may read; ``embeddings`` is only touched by the sub-class methods."""

    logits: Any  # (n, C) teacher logits
    embeddings: Any  # (n, D) teacher embeddings, possibly a float16 memmap
    labels: Any  # (n,) class indices, -1 for unlabelled rows
    subclasses: int
    beta: float
    tau: float
    seed: int
    head_weight: Any  # (C, D) weight of the teacher's last Linear
    class_names: Sequence[str] | None = None


def _float32(targets: Any) -> np.ndarray:
    if hasattr(targets, "detach"):
        targets = targets.detach().cpu().numpy()
    return np.ascontiguousarray(targets, dtype=np.float32)


def ce_targets(inp: TargetInputs) -> Targets:
    """``t_c = 1[c = y]``: one-hot labels; an unlabelled row (-1) takes the teacher's argmax."""
    if inp.logits is None and inp.labels is None:
        raise ConfigError("ce needs labels or teacher logits")
    n_classes = np.shape(inp.logits)[1] if inp.logits is not None else int(np.max(inp.labels)) + 1
    n_rows = len(inp.labels) if inp.labels is not None else len(inp.logits)
    y = resolve_labels(inp.labels, inp.logits, n_rows, n_classes)
    return np.eye(n_classes, dtype=np.float32)[y], 1, None


def kd_targets(inp: TargetInputs) -> Targets:
    """``t_c = softmax(logits / tau)_c``: Hinton's softened teacher probabilities (also FitNet's)."""
    return softmax_rows(inp.logits, inp.tau), 1, None


def lelp_targets(inp: TargetInputs) -> Targets:
    """``t_{c,s} = softmax(logits/tau)_c * softmax_s(z_{c,s}/beta)`` with PCA null-space ``z``."""
    return _projector_targets(inp, "pca")


def random_subclass_targets(inp: TargetInputs) -> Targets:
    """As LELP, but ``z`` uses random orthonormal null-space directions: the no-PCA control."""
    return _projector_targets(inp, "random")


def _projector_targets(inp: TargetInputs, directions: str) -> Targets:
    projector = LELPProjector(inp.subclasses, beta=inp.beta, seed=inp.seed, directions=directions)
    projector.fit(inp.embeddings, inp.labels, inp.head_weight, logits=inp.logits, class_names=inp.class_names)
    return _float32(projector.targets(inp.embeddings, inp.logits, inp.tau)), inp.subclasses, projector


def uniform_subclass_targets(inp: TargetInputs) -> Targets:
    """``t_{c,s} = softmax(logits/tau)_c / S``: each class split evenly, the no-structure control."""
    probs = softmax_rows(inp.logits, inp.tau)
    return np.repeat(probs / inp.subclasses, inp.subclasses, axis=1), inp.subclasses, None


def kmeans_subclass_targets(inp: TargetInputs) -> Targets:
    """``t_{c,s} = softmax(logits/tau)_c * softmax_s(-d_{c,s}^2 / (scale_c beta))``, k-means clusters."""
    model = KMeansSubclasser(inp.subclasses, beta=inp.beta, seed=inp.seed)
    model.fit(inp.embeddings, inp.labels, inp.head_weight, logits=inp.logits, class_names=inp.class_names)
    return _float32(model.targets(inp.embeddings, inp.logits, inp.tau)), inp.subclasses, model


BUILDERS: dict[Method, Callable[[TargetInputs], Targets]] = {
    Method.CE: ce_targets,
    Method.KD: kd_targets,
    Method.FITNET: kd_targets,
    Method.LELP: lelp_targets,
    Method.RANDOM_SUBCLASS: random_subclass_targets,
    Method.UNIFORM_SUBCLASS: uniform_subclass_targets,
    Method.KMEANS_SUBCLASS: kmeans_subclass_targets,
}


def fitnet_hint(hidden_size: int, embeddings: Any) -> FitNetHint:
    """FitNet's extra training term: a regressor from the student's hidden vector (``hidden_size``)
    onto the teacher's embedding, trained with the student (Romero et al. 2015)."""
    return FitNetHint(hidden_size, embeddings)


# Methods whose student trains with an extra term besides the target cross-entropy.
HINTS: dict[Method, Callable[[int, Any], FitNetHint]] = {Method.FITNET: fitnet_hint}


def build_hint(method: str | Method, hidden_size: int, embeddings: Any) -> FitNetHint | None:
    """The extra training term of ``method`` for a student of ``hidden_size``, or None (most methods).

    Build it right after the student: its initial weights come from the same seeded generator.
    """
    builder = HINTS.get(parse_method(method))
    return builder(hidden_size, embeddings) if builder is not None else None


def build_targets(
    method: str | Method,
    logits: Any,
    embeddings: Any,
    labels: Any,
    *,
    subclasses: int,
    beta: float,
    tau: float,
    seed: int,
    head_weight: Any,
    class_names: Sequence[str] | None = None,
) -> Targets:
    """Targets for ``method``: ``(targets (n, K) float32, subclasses used, fitted model or None)``.

    ``subclasses`` is ignored (1 is returned) by ce/kd/fitnet; for the sub-class methods it must
    already be an integer (``"auto"`` is resolved by the caller's search). Rows labelled -1 are
    unlabelled: ce falls back to the teacher's argmax and the projectors assign them to it.
    With S = 1 the lelp targets equal the kd targets, as the method reduces to KD.
    """
    chosen = parse_method(method)
    if chosen is not Method.CE and logits is None:
        raise ConfigError(f"method {chosen.value} needs the teacher's logits", param="logits")
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}", param="tau")
    if chosen in SUBCLASS_METHODS:
        if isinstance(subclasses, bool) or not isinstance(subclasses, int | np.integer) or subclasses < 1:
            raise ConfigError(f"subclasses must be an integer >= 1 for {chosen.value}, got {subclasses!r}",
                              param="subclasses")
        if not beta > 0:
            raise ConfigError(f"beta must be > 0, got {beta}", param="beta")
        subclasses = int(subclasses)
    inputs = TargetInputs(logits, embeddings, labels, subclasses, beta, tau, seed, head_weight, class_names)
    return BUILDERS[chosen](inputs)
