"""Issue 18: report text is drawn literally: a teacher label like ``$\\notacommand$`` was parsed as
mathtext by matplotlib, raised, and failed the job."""

from __future__ import annotations

import base64

import numpy as np

from lelp.report import plots

LABELS = ["$\\notacommand$", "a $x^{ b", "$$"]


def _svg(uri: str) -> str:
    return base64.b64decode(uri.split(",", 1)[1]).decode()


def test_labels_with_dollar_signs_render_literally() -> None:
    svg = _svg(plots.confusion(np.eye(3), LABELS, "title $\\bad$", "teacher", "student"))
    assert svg.startswith("<?xml")
    counts = _svg(plots.label_counts(LABELS, {"train": [1, 2, 3], "test": [0, 1, 1]}))
    assert "<svg" in counts
    import matplotlib.pyplot as plt

    assert plt.rcParams["text.parse_math"] is False and plt.rcParams["text.usetex"] is False
