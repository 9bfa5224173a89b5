"""Student artifacts: a directory a user can take away, and the predictors that read it.

Layout (``FORMAT_VERSION`` 1)::

    lelp_student.json   kind, labels, S, C, method, hyperparameters, sources, format_version
    model.safetensors   the weights (for ``transformer``: a plain Hugging Face model dir,
                        config.json + tokenizer files beside it; for ``static``: the
                        table as ``embeddings`` + the head, a model2vec StaticModel dir
                        with tokenizer.json and a model2vec config.json beside it)
    encoder/            encoder_mlp only: the frozen sentence encoder (HF dir)
    metrics.json        what ``lelp distill`` measured
    README.md           how the S*C outputs fold into C classes

The student has S*C outputs; column ``c*S+s`` is sub-class s of class c and the class
probability is the sum over s of the softmax (its logit is the logsumexp).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lelp.cascade import apply_temperature
from lelp.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "lelp_student.json"

_README = """# LELP student ({kind}, method {method})

Labels: {labels}. The model has S*C = {subclasses}*{num_classes} outputs; column c*S+s is
pseudo-subclass s of class c. Class probability = sum over s of softmax(outputs)[c*S+s]
(equivalently, class logit = logsumexp of its S logits).
Calibrated (what `load_student` answers): divide the class log-probabilities by the temperature in
lelp_student.json (T = {temperature}, fitted on the job's validation rows) and renormalise:
p_c ** (1/T) / sum_k p_k ** (1/T). The label never changes.

```python
from lelp import load_student
model = load_student("{name}")
model.predict(["some text"])   # [{{"label", "score", "probabilities"}}]
```
{extra}"""

def fold_probabilities(probs: np.ndarray, subclasses: int) -> np.ndarray:
    if subclasses == 1:
        return probs
    return probs.reshape(probs.shape[0], -1, subclasses).sum(axis=2)


class Predictor:
    """Shared by students and teachers: turns class probabilities into prediction records."""

    labels: list[str]
    #: the manifest's calibration temperature (lelp.cascade): divides the class log-probabilities
    temperature: float = 1.0

    def predict_proba(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list[dict]:
        probs = self.predict_proba(texts, text_pairs)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append({"label": self.labels[best], "score": float(row[best]),
                        "probabilities": {name: float(p) for name, p in zip(self.labels, row, strict=True)}})
        return out


class HFClassifierPredictor(Predictor):
    """A Hugging Face sequence classifier (a teacher, or a transformer student with S*C outputs)."""

    def __init__(self, model, tokenizer, labels: list[str], subclasses: int = 1, max_length: int = 128,
                 batch_size: int = 64):
        self.model, self.tokenizer, self.labels = model.eval(), tokenizer, labels
        self.subclasses, self.max_length, self.batch_size = subclasses, max_length, batch_size

    def predict_proba(self, texts, text_pairs=None) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                pairs = list(text_pairs[i:i + self.batch_size]) if text_pairs is not None else None
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), pairs, truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt").to(device)
                chunks.append(torch.softmax(self.model(**enc).logits.float(), -1).cpu().numpy())
        probs = np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels) * self.subclasses))
        return apply_temperature(fold_probabilities(probs, self.subclasses), self.temperature)


class StudentPredictor(Predictor):
    """A student module plus ``make_inputs(texts, text_pairs)``, its kind's featuriser."""

    def __init__(self, student, manifest: dict, make_inputs, batch_size: int = 512):
        self.student, self.manifest, self.make_inputs = student.eval(), manifest, make_inputs
        self.labels = list(manifest["labels"])
        self.subclasses = int(manifest["subclasses"])
        self.batch_size = batch_size

    def predict_proba(self, texts, text_pairs=None) -> np.ndarray:
        from lelp.students.base import predict_class_log_probs

        inputs = self.make_inputs(texts, text_pairs)
        probs = np.exp(predict_class_log_probs(self.student, inputs, self.subclasses, batch_size=self.batch_size))
        return apply_temperature(probs, self.temperature)


def read_manifest(path: str | Path) -> dict:
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not a LELP student artifact (no {MANIFEST})", param="model")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{file} is damaged: {exc}", param="model") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {version!r}; this lelp reads version "
                            f"{FORMAT_VERSION} (re-run the distillation with this version)", param="model")
    return manifest


def save_student(student, out_dir: str | Path, manifest: dict, kind, *, metrics: dict | None = None) -> Path:
    """Write the artifact. ``manifest`` holds labels, subclasses, method, hyperparameters, sources;
    ``kind`` (a ``StudentKind`` of the job) writes the weights and what else its student needs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {**manifest, "format_version": FORMAT_VERSION, "kind": student.kind, "spec": student.spec()}
    kind.save(student, out)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "README.md").write_text(_README.format(
        kind=student.kind, method=manifest.get("method"), labels=", ".join(manifest["labels"]),
        subclasses=manifest["subclasses"], num_classes=len(manifest["labels"]), name=out.name,
        temperature=manifest.get("temperature", 1.0),
        extra=kind.readme_note))
    return out


def load_student(path: str | Path) -> Predictor:
    """Load a student artifact written by :func:`save_student` (its kind reads it)."""
    from lelp.students.registry import student_kind

    path = Path(path)
    manifest = read_manifest(path)
    kind = manifest.get("kind")
    try:
        predictor = student_kind(kind).load(path, manifest)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: cannot load the {kind} student: {exc}", param="model") from None
    predictor.temperature = float(manifest.get("temperature", 1.0))  # written by a job since issue 22
    return predictor


def load_predictor(path: str | Path) -> Predictor:
    """A student artifact or a teacher directory, behind the same ``predict`` interface."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return load_student(path)
    from lelp.teacher.loading import load_teacher

    teacher = load_teacher(path)
    return HFClassifierPredictor(teacher.model, teacher.tokenizer, list(teacher.info.labels))
