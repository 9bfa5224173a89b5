"""LELP: distil few-class text classifiers through linear projections of teacher embeddings.

Importing ``lelp`` is cheap: torch and transformers load only when a name that needs
them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LELPProjector": "lelp.projection",
    "KMeansSubclasser": "lelp.kmeans_subclass",
    "Method": "lelp.targets",
    "build_targets": "lelp.targets",
    "distillation_loss": "lelp.losses",
    "load_teacher": "lelp.teacher",
    "read_teacher_config": "lelp.teacher",
    "extract_teacher_features": "lelp.features",
    "encode_mean_pooled": "lelp.features",
    "TeacherFeatures": "lelp.features",
    "DistillConfig": "lelp.pipeline",
    "distill": "lelp.pipeline",
    "load_student": "lelp.artifacts",
    "load_predictor": "lelp.artifacts",
    "read_table": "lelp.data",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lelp' has no attribute {name!r}")
