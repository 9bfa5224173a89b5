"""LELP: distil few-class text classifiers through linear projections of teacher embeddings.

Importing ``lelp`` is cheap: torch and transformers load only when a name that needs
them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LELPProjector": "lelp.method.projection",
    "KMeansSubclasser": "lelp.method.kmeans_subclass",
    "Method": "lelp.method.targets",
    "build_targets": "lelp.method.targets",
    "distillation_loss": "lelp.method.losses",
    "load_teacher": "lelp.teacher.loading",
    "read_teacher_config": "lelp.teacher.loading",
    "extract_teacher_features": "lelp.teacher.features",
    "encode_mean_pooled": "lelp.teacher.features",
    "TeacherFeatures": "lelp.teacher.features",
    "DistillConfig": "lelp.pipeline",
    "distill": "lelp.pipeline",
    "load_student": "lelp.artifacts",
    "load_predictor": "lelp.artifacts",
    "read_table": "lelp.data.datasets",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lelp' has no attribute {name!r}")
