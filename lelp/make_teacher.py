"""Fine-tune a pretrained encoder into a teacher, for users without one (and for the demo).

It reuses the student trainer: a Hugging Face classifier wrapped as a ``TransformerStudent``
and trained on one-hot targets is plain fine-tuning with cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lelp.data import encode_labels, read_table
from lelp.errors import DataError
from lelp.progress import CancelCheck, ProgressCallback


@dataclass(frozen=True)
class TeacherTrainingConfig:
    epochs: int = 1
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 64
    max_rows: int | None = None
    seed: int = 0


def sorted_label_names(labels: list[str | None]) -> list[str]:
    """The distinct labels, numerically sorted when they are all integers (``0, 1, 2``)."""
    names = sorted({label for label in labels if label is not None})
    if all(name.lstrip("-").isdigit() for name in names):
        names.sort(key=int)
    return names


def make_teacher(base_dir: str | Path, train_path: str | Path, out_dir: str | Path, *,
                 config: TeacherTrainingConfig = TeacherTrainingConfig(), text_column: str = "text",
                 text_pair_column: str | None = None, label_column: str = "label", device: str = "auto",
                 progress: ProgressCallback | None = None, should_cancel: CancelCheck | None = None) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lelp.students.transformer import TransformerStudent
    from lelp.teacher import load_tokenizer, read_model_config
    from lelp.train import TrainConfig, train_student

    base = Path(base_dir)
    read_model_config(base)  # refuses missing dirs, bad JSON and remote code
    data = read_table(train_path, text_column=text_column, text_pair_column=text_pair_column,
                      label_column=label_column)
    names = sorted_label_names(data.labels)
    if len(names) < 2:
        raise DataError(f"{Path(train_path).name}: a teacher needs at least 2 classes, found {names}",
                        param="label_column")
    labels = np.asarray(encode_labels(data.labels, names))
    rows = np.flatnonzero(labels >= 0)
    if config.max_rows:
        rows = np.random.default_rng(config.seed).permutation(rows)[: config.max_rows]
    hf_config = AutoConfig.from_pretrained(base, num_labels=len(names), id2label=dict(enumerate(names)),
                                           label2id={n: i for i, n in enumerate(names)}, local_files_only=True,
                                           trust_remote_code=False)
    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, config=hf_config, local_files_only=True,
                                                               trust_remote_code=False, use_safetensors=True)
    tokenizer = load_tokenizer(base)
    wrapped = TransformerStudent(model)
    texts = [data.texts[i] for i in rows]
    pairs = [data.text_pairs[i] for i in rows] if data.text_pairs is not None else None
    inputs = wrapped.make_inputs(tokenizer, texts, pairs, config.max_length)
    targets = np.eye(len(names), dtype=np.float32)[labels[rows]]
    train_student(wrapped, inputs, targets, labels[rows],
                  TrainConfig(epochs=config.epochs, learning_rate=config.learning_rate,
                              batch_size=config.batch_size, seed=config.seed, weight_decay=0.01),
                  device=device, progress=progress, should_cancel=should_cancel)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.cpu().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
