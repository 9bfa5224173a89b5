"""Fine-tune a pretrained encoder into a teacher, for users without one (and for the demo).

It reuses the student trainer: a Hugging Face classifier wrapped as a ``TransformerStudent``
and trained on one-hot targets is plain fine-tuning with cross-entropy. A seeded 10% of the
labelled rows is held out; every epoch is scored on it and the best epoch ships, with its
held-out accuracy written beside the weights (``TEACHER_METRICS``). Defaults (3 epochs at 1e-4,
patience 1) follow the measurement in the issue that 2 epochs at 1e-4 of MiniLM beat 1 at 5e-5
with the training loss still falling; ``benchmarks/README.md`` lists the per-epoch history.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lelp.data.datasets import encode_labels, read_table, split_rows
from lelp.errors import DataError
from lelp.progress import CancelCheck, ProgressCallback


@dataclass(frozen=True)
class TeacherTrainingConfig:
    epochs: int = 3
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_length: int = 64
    max_rows: int | None = None
    seed: int = 0
    holdout_fraction: float = 0.1
    patience: int | None = 1


TEACHER_METRICS = "lelp_teacher_metrics.json"


def teacher_holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of the labelled rows, a seeded uniform draw (not stratified)."""
    labelled = np.flatnonzero(labels >= 0)
    part, held = split_rows(labels[labelled], fraction, seed + 11)
    return labelled[part], labelled[held]


def sorted_label_names(labels: list[str | None]) -> list[str]:
    """The distinct labels, numerically sorted when they are all integers (``0, 1, 2``)."""
    names = sorted({label for label in labels if label is not None})
    if all(name.lstrip("-").isdigit() for name in names):
        names.sort(key=int)
    return names


def class_names(data_labels: list[str], names: list[str] | None) -> tuple[list[str], list[str]]:
    """(the teacher's class names, the data's label for each class, in the same order).

    ``names`` are the names the teacher will answer with (``--labels negative,positive``):
    when they are exactly the data's labels they only choose the class order; otherwise they
    name the data's sorted labels in turn (``0`` -> ``negative``, ``1`` -> ``positive``), so a
    teacher trained on 0/1 data need not answer "0" and "1".
    """
    if names is None:
        return data_labels, data_labels
    names = [str(n).strip() for n in names]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise DataError(f"--labels must be distinct non-empty names, got {', '.join(names) or 'none'}",
                        param="labels")
    if set(names) == set(data_labels):
        return names, names
    if len(names) != len(data_labels):
        raise DataError(f"--labels names {len(names)} classes but the data has {len(data_labels)} "
                        f"({', '.join(data_labels)}): give one name per label, in that order", param="labels")
    return names, data_labels


def make_teacher(base_dir: str | Path, train_path: str | Path, out_dir: str | Path, *,
                 config: TeacherTrainingConfig = TeacherTrainingConfig(), text_column: str = "text",
                 text_pair_column: str | None = None, label_column: str = "label", device: str = "auto",
                 progress: ProgressCallback | None = None, should_cancel: CancelCheck | None = None,
                 label_names: list[str] | None = None) -> Path:
    """Fine-tune ``base_dir`` on ``train_path``; the best epoch on a held-out 10% is written to ``out_dir``.

    ``label_names``: the class names the teacher answers with (``class_names``); default the data's labels.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lelp.students.transformer import TransformerStudent
    from lelp.teacher.loading import load_tokenizer, read_model_config
    from lelp.training.loop import TrainConfig, train_student

    base = Path(base_dir)
    read_model_config(base)  # refuses missing dirs, bad JSON and remote code
    data = read_table(train_path, text_column=text_column, text_pair_column=text_pair_column,
                      label_column=label_column)
    found = sorted_label_names(data.labels)
    if len(found) < 2:
        raise DataError(f"{Path(train_path).name}: a teacher needs at least 2 classes, found {found}",
                        param="label_column")
    names, data_order = class_names(found, label_names)
    labels = np.asarray(encode_labels(data.labels, data_order))
    if config.max_rows:
        keep = np.random.default_rng(config.seed).permutation(np.flatnonzero(labels >= 0))[: config.max_rows]
        mask = np.full(len(labels), -1)
        mask[keep] = labels[keep]
        labels = mask
    rows, held = teacher_holdout_split(labels, config.holdout_fraction, config.seed)
    hf_config = AutoConfig.from_pretrained(base, num_labels=len(names), id2label=dict(enumerate(names)),
                                           label2id={n: i for i, n in enumerate(names)}, local_files_only=True,
                                           trust_remote_code=False)
    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, config=hf_config, local_files_only=True,
                                                               trust_remote_code=False, use_safetensors=True)
    tokenizer = load_tokenizer(base)
    wrapped = TransformerStudent(model)
    def rows_inputs(idx):
        texts = [data.texts[i] for i in idx]
        pairs = [data.text_pairs[i] for i in idx] if data.text_pairs is not None else None
        return wrapped.make_inputs(tokenizer, texts, pairs, config.max_length)

    from lelp.devices.resolve import resolve_device
    from lelp.students.base import predict_class_log_probs

    held_inputs, held_truth = rows_inputs(held), labels[held]
    dev = resolve_device(device)

    def held_out_accuracy(student) -> float:
        pred = predict_class_log_probs(student, held_inputs, 1, dev, batch_size=128).argmax(1)
        return float((pred == held_truth).mean())

    targets = np.eye(len(names), dtype=np.float32)[labels[rows]]
    result = train_student(wrapped, rows_inputs(rows), targets, labels[rows],
                           TrainConfig(epochs=config.epochs, learning_rate=config.learning_rate,
                                       batch_size=config.batch_size, seed=config.seed, weight_decay=0.01,
                                       patience=config.patience),
                           device=device, progress=progress, should_cancel=should_cancel,
                           evaluate=held_out_accuracy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.cpu().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    metrics = {"held_out_accuracy": result.best_score, "held_out_rows": int(len(held)), "train_rows": int(len(rows)),
               "config": asdict(config), "labels": names, **result.summary()}
    (out / TEACHER_METRICS).write_text(json.dumps(metrics, indent=2))
    return out
