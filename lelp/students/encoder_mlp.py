"""Cross-architecture student: a frozen pretrained sentence encoder, mean-pooled, + MLP.

Only the MLP trains, on encoder embeddings computed once and cached on disk
(``lelp.teacher.features.encode_mean_pooled``), so an epoch costs a few matrix products.
The encoder travels inside the artifact (``encoder/``) so predictions need nothing else.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lelp.errors import ConfigError
from lelp.students.base import Student, mlp_head
from lelp.students.kind import StudentKind


class DenseInputs:
    """Precomputed fixed-size vectors (a float16 memmap is fine): a batch is a float tensor."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        rows = np.asarray(self.vectors[indices.numpy()])
        return {"features": torch.from_numpy(rows.astype(np.float32)).to(device)}


class EncoderMLPStudent(Student):
    kind = "encoder_mlp"

    def __init__(self, num_outputs: int, *, input_size: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.num_outputs, self.input_size, self.hidden_size, self.dropout = num_outputs, input_size, hidden, dropout
        self.norm = nn.LayerNorm(input_size)
        self.head = mlp_head(input_size, hidden, num_outputs, dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.head[:-1](self.norm(batch["features"]))
        return self.head[-1](hidden), hidden

    def spec(self) -> dict:
        return {"num_outputs": self.num_outputs, "input_size": self.input_size, "hidden": self.hidden_size,
                "dropout": self.dropout}


class FrozenEncoder:
    """The artifact's sentence encoder at serving time: tokenise, forward, mean-pool (in memory)."""

    def __init__(self, model_dir, max_length: int = 128, batch_size: int = 64):
        from lelp.teacher.features import load_encoder

        self.model, self.tokenizer = load_encoder(model_dir)
        self.max_length, self.batch_size = max_length, batch_size

    def encode(self, texts, text_pairs=None) -> np.ndarray:
        from lelp.teacher.features import mean_pool

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                pairs = list(text_pairs[i:i + self.batch_size]) if text_pairs is not None else None
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), pairs, truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt")
                out.append(mean_pool(self.model(**enc).last_hidden_state, enc["attention_mask"]).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.hidden_size), np.float32)


class EncoderMLPKind(StudentKind):
    student_class = EncoderMLPStudent
    name = "encoder_mlp"

    def inputs(self, texts, text_pairs, dataset_sha256):
        from lelp.teacher.features import encode_mean_pooled

        ctx = self.ctx
        vectors = encode_mean_pooled(ctx.student_base, texts, text_pairs, max_length=ctx.max_length,
                                     cache_dir=ctx.cache_dir, dataset_sha256=dataset_sha256, device=ctx.device,
                                     progress=ctx.progress, should_cancel=ctx.should_cancel)
        self.input_size = int(vectors.shape[1])
        return DenseInputs(vectors)

    def build(self, num_outputs, labels, subclasses):
        try:
            return EncoderMLPStudent(num_outputs, input_size=self.input_size, **self.ctx.options)
        except TypeError as exc:
            raise ConfigError(f"bad student option for encoder_mlp: {exc}", param="student_options") from None

    def save(self, student, out):
        from lelp.uploads.model_files import copy_model_files

        super().save(student, out)
        copy_model_files(self.ctx.student_base, out / "encoder")  # the encoder's own files, never a link

    @classmethod
    def load(cls, path, manifest):
        from safetensors.torch import load_file

        from lelp.artifacts import StudentPredictor

        student = EncoderMLPStudent(**manifest["spec"])
        student.load_state_dict(load_file(str(path / "model.safetensors")))
        encoder = FrozenEncoder(path / "encoder", max_length=int(manifest.get("max_length", 128)))
        predictor = StudentPredictor(student, manifest, lambda texts, pairs: DenseInputs(encoder.encode(texts, pairs)))
        predictor.encoder = encoder  # ONNX export traces the encoder and the head as one graph
        return predictor
