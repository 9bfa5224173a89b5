"""What a job needs from a student kind, in one object per kind (looked up in the registry).

A kind builds its model, makes its inputs from text (one signature for training and serving),
and writes / reads its artifact. ``DistillJob`` and ``lelp.artifacts`` only call these methods,
so a new kind is one new module plus one line in ``lelp.students.registry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from lelp.progress import CancelCheck, ProgressCallback

if TYPE_CHECKING:
    from lelp.artifacts import Predictor
    from lelp.students.base import Student, StudentInputs


@dataclass
class KindContext:
    """Everything of the job a kind may read: the teacher, the base encoder, options, caches."""

    teacher: Any  # lelp.teacher.loading.Teacher
    student_base: str | None = None
    options: dict = field(default_factory=dict)
    max_length: int = 128
    device: torch.device = torch.device("cpu")
    cache_dir: str | Path | None = None
    progress: ProgressCallback | None = None
    should_cancel: CancelCheck | None = None

    @cached_property  # read from disk once, not per split and again at save time
    def tokenizer(self):
        """The student's tokenizer: ``student_base``'s when given, else the teacher's."""
        if self.student_base:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(self.student_base, local_files_only=True)
        return self.teacher.tokenizer


class StudentKind:
    """One student kind. Subclasses set ``name`` and implement the four methods."""

    name: ClassVar[str] = ""
    student_class: ClassVar[type]  # the nn.Module it builds

    def __init__(self, ctx: KindContext):
        self.ctx = ctx

    def inputs(self, texts: Sequence[str], text_pairs: Sequence[str] | None, dataset_sha256: str | None
               ) -> StudentInputs:
        """The training/eval inputs of these rows (``dataset_sha256`` keys any cache)."""
        raise NotImplementedError

    def build(self, num_outputs: int, labels: Sequence[str], subclasses: int) -> Student:
        raise NotImplementedError

    def save(self, student: Student, out: Path) -> None:
        """Write the weights and whatever else the artifact needs to predict on its own."""
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
                  str(out / "model.safetensors"))

    @classmethod
    def load(cls, path: Path, manifest: dict) -> Predictor:
        raise NotImplementedError

    readme_note: ClassVar[str] = ""
