"""Whether a job's labels can give a meaningful result: one rule for the library and the service.

A job is scored on its eval labels (or on a held-out split of its train labels) and shaped by
its train labels. Three things make that result meaningless, so both ``lelp distill`` (through
``DataError``) and ``POST /v1/jobs`` (a 422, from the datasets' stored label counts) refuse them
before anything trains:

- an eval set without labels (nothing to score against; before, a file that happened to have a
  ``label`` column was silently scored against it);
- labelled rows of a single class in the train or eval set (the student learns or is scored on
  one answer: "100% accuracy" that means nothing);
- labels the teacher does not know (``label_matcher``: its names in any case, or indices).

An unlabelled train set (transfer data) is fine: the teacher labels it. Plain Python, no torch,
so the API process can run it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lelp.data.datasets import label_matcher


@dataclass(frozen=True)
class LabelProblem:
    """Why a job's labels cannot give a meaningful result."""

    role: str  # "train" | "eval" | "validation": which dataset is at fault
    code: str  # "unknown_label" | "single_class" | "eval_labels_required"
    message: str  # names the dataset as the caller knows it (``names``)


def label_problem(teacher_labels: Sequence[str], train_counts: Mapping[str, int],
                  eval_counts: Mapping[str, int] | None, *, names: Mapping[str, str],
                  has_eval: bool | None = None,
                  validation_counts: Mapping[str, int] | None = None) -> LabelProblem | None:
    """The first problem with the labels of a job, or None.

    ``*_counts``: label name -> labelled rows (``label_counts``; an eval set read without a label
    column has ``{}``). ``has_eval``: whether the job has an eval set (default: ``eval_counts`` is
    not None). ``validation_counts``: a validation set's (unlabelled rows are scored against the teacher,
    so it may have none). ``names``: ``{"train": ..., "eval": ..., "validation": ...}``, how the messages
    name the datasets.
    """
    has_eval = eval_counts is not None if has_eval is None else has_eval
    index = label_matcher(list(teacher_labels))
    known = ", ".join(map(str, teacher_labels))
    sets = [("train", train_counts)] + ([("eval", eval_counts or {})] if has_eval else []) + \
        ([("validation", validation_counts)] if validation_counts is not None else [])
    for role, counts in sets:
        unknown = sorted(label for label in counts if index(label) is None)
        if unknown:
            return LabelProblem(role, "unknown_label", f"{names[role]} has unknown label(s), not the teacher's: "
                                f"{', '.join(unknown[:10])}; teacher labels: {known} (or their indices "
                                f"0..{len(teacher_labels) - 1})")
    if has_eval and not sum((eval_counts or {}).values()):
        return LabelProblem("eval", "eval_labels_required",
                            f"{names['eval']} has no labels, so the student could not be scored on it: give an eval "
                            "set with a label column (or leave the eval set out: the job then holds out 10% of "
                            "the labelled train rows)")
    for role, counts in sets:
        classes = {index(label) for label, n in counts.items() if n > 0}
        if len(classes) == 1:
            only = teacher_labels[classes.pop()]
            what = ("the student would learn a single answer" if role == "train" else
                    "every score on it would measure one answer")
            return LabelProblem(role, "single_class",
                                f"{names[role]} has labelled rows of a single class ({only!r}): {what}; add rows "
                                "of the other classes" + (", or leave the labels out to let the teacher label "
                                                          "every row" if role == "train" else ""))
    return None
