"""A smaller encoder of the teacher's own family, with an S*C classification head.

Built from the teacher's config with fewer layers and initialised from every k-th
teacher layer where shapes match (the DistilBERT recipe), or from a given pretrained
directory. It stays a plain Hugging Face model: the artifact loads with
``AutoModelForSequenceClassification``. The student is found generically (the input
of its last ``nn.Linear`` is the ``hidden`` FitNet regresses), never per family.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lelp.students.base import Student
from lelp.students.kind import StudentKind

_LAYER_KEY = re.compile(r"(\.layer\.)(\d+)(\.)")


def teacher_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, always keeping the last (closest to the head)."""
    if student_layers >= teacher_layers:
        return list(range(teacher_layers))
    step = teacher_layers / student_layers
    return [min(teacher_layers - 1, int(round(step * (i + 1))) - 1) for i in range(student_layers)]


def subclass_label_names(labels: Sequence[str], subclasses: int) -> dict[int, str]:
    """``id2label`` of the S*C head: ``positive/0 ... positive/S-1`` (column c*S+s)."""
    if subclasses == 1:
        return dict(enumerate(labels))
    return {c * subclasses + s: f"{name}/{s}" for c, name in enumerate(labels) for s in range(subclasses)}


def _init_from_teacher(student: nn.Module, teacher: nn.Module, layer_map: list[int]) -> int:
    """Copy every teacher tensor whose (re-indexed) name and shape match; returns the count."""
    source = teacher.state_dict()
    target = student.state_dict()
    copied = 0
    for key, value in target.items():
        match = _LAYER_KEY.search(key)
        teacher_key = key
        if match:
            j = int(match.group(2))
            if j < len(layer_map):
                teacher_key = key[: match.start(2)] + str(layer_map[j]) + key[match.end(2):]
        tensor = source.get(teacher_key)
        if tensor is not None and tensor.shape == value.shape:
            target[key] = tensor.clone()
            copied += 1
    student.load_state_dict(target)
    return copied


def build_transformer_student(teacher_model: nn.Module, labels: Sequence[str], subclasses: int, *,
                              layers: int | None = None, base_dir: str | None = None) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    num_outputs = len(labels) * subclasses
    id2label = subclass_label_names(labels, subclasses)
    if base_dir:
        return AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=num_outputs, id2label=id2label, label2id={v: k for k, v in id2label.items()},
            ignore_mismatched_sizes=True, trust_remote_code=False, local_files_only=True)
    config = copy.deepcopy(teacher_model.config)
    teacher_layers = int(config.num_hidden_layers)
    student_layers = layers or max(1, teacher_layers // 2)
    config.num_hidden_layers = student_layers
    config.num_labels = num_outputs
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
    student = type(teacher_model)(config)
    _init_from_teacher(student, teacher_model, teacher_layer_map(teacher_layers, student_layers))
    return student


class TokenInputs:
    """Tokenised rows packed into flat int32 arrays (``lelp.teacher.features.TokenizedRows``), padded per batch.

    No per-row Python lists are kept: a million rows of them took ~4.6 GB, the packed arrays
    ~4 bytes per token per tokenizer output (``benchmarks/scale.py``).
    """

    def __init__(self, tokenizer, texts: Sequence[str], text_pairs: Sequence[str] | None, max_length: int):
        from lelp.teacher.features import tokenize_rows

        self.tokenizer = tokenizer
        self.tokens = tokenize_rows(tokenizer, texts, text_pairs, max_length)

    def __len__(self) -> int:
        return len(self.tokens.offsets) - 1

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        from lelp.devices.cuda import to_device

        padded = self.tokenizer.pad(self.tokens.batch(indices.numpy()), return_tensors="pt")
        return {k: to_device(v, device) for k, v in padded.items()}

    def row_lengths(self) -> list[int]:
        """Tokens per row: the GPU batch finder tries the longest rows."""
        return self.tokens.lengths.tolist()


class TransformerStudent(Student):
    """Wraps the HF model so the trainer sees ``(logits, hidden)`` like any other student."""

    kind = "transformer"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        self.hidden_size = self.head.in_features
        self._hidden: torch.Tensor | None = None
        self.head.register_forward_pre_hook(self._capture)

    def _capture(self, _module: nn.Module, args: tuple) -> None:
        self._hidden = args[0]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(**batch).logits
        hidden, self._hidden = self._hidden, None
        return logits, hidden

    def make_inputs(self, tokenizer, texts, text_pairs, max_length: int) -> TokenInputs:
        return TokenInputs(tokenizer, texts, text_pairs, max_length)

    def spec(self) -> dict:
        return {"hf_config": "config.json"}

    def save_pretrained(self, out_dir: str | Path) -> None:
        self.model.save_pretrained(out_dir, safe_serialization=True)


class TransformerKind(StudentKind):
    student_class = TransformerStudent
    name = "transformer"
    readme_note = """
This directory is also a plain Hugging Face model:
`AutoModelForSequenceClassification.from_pretrained(dir)` gives the S*C logits; fold them with
`logits.view(-1, C, S).logsumexp(-1)`. In a pipeline each output is named `class/sub-class`:

```python
scores = pipeline("text-classification", model=dir, top_k=None)(["some text"])[0]
probs = Counter()
for s in scores: probs[s["label"].rsplit("/", 1)[0]] += s["score"]
```
"""

    def inputs(self, texts, text_pairs, dataset_sha256):
        return TokenInputs(self.ctx.tokenizer, texts, text_pairs, self.ctx.max_length)

    def build(self, num_outputs, labels, subclasses):
        ctx = self.ctx
        return TransformerStudent(build_transformer_student(ctx.teacher.model, labels, subclasses,
                                                            layers=ctx.options.get("layers"),
                                                            base_dir=ctx.student_base))

    def save(self, student, out):
        student.save_pretrained(out)
        self.ctx.tokenizer.save_pretrained(out)

    @classmethod
    def load(cls, path, manifest):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from lelp.artifacts import HFClassifierPredictor

        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True,
                                                                   trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return HFClassifierPredictor(model, tokenizer, manifest["labels"], int(manifest["subclasses"]),
                                     int(manifest.get("max_length", 128)))
