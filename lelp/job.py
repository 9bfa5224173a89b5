"""The state of one distillation job between its stages (used by ``lelp.pipeline.distill``).

Kept apart from ``pipeline.py`` so that the stages read top to bottom there, and the
bookkeeping (splits, inputs, candidates) lives here.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lelp.cascade import STANDARD_TARGETS, apply_temperature, at_target, cascade_curve, fit_temperature, nll, speedup
from lelp.config import (
    AUTO_STUDENT,
    AUTO_STUDENT_KINDS,
    DEFAULT_BETA,
    VALIDATION_FRACTION,
    Candidate,
    DistillConfig,
    effective_hyperparameters,
)
from lelp.data.augment import AugmentSpec, ChainedTexts, WordNeighbours, augment_rows, auto_variants
from lelp.data.datasets import TextDataset, encode_labels, file_sha256, label_counts, read_table, split_rows
from lelp.data.label_checks import label_problem
from lelp.data.splits import HOLD_OUT_MINIMUM
from lelp.devices.resolve import resolve_device
from lelp.errors import DataError
from lelp.evaluate import agreement, alternating_speeds, classification_metrics, directory_size
from lelp.method.projection import softmax_rows
from lelp.method.targets import build_hint, build_targets
from lelp.progress import CancelCheck, Progress, ProgressCallback, report
from lelp.students.base import count_module_parameters, predict_class_log_probs
from lelp.students.kind import KindContext
from lelp.students.registry import student_kind
from lelp.students.static import StaticKind
from lelp.teacher.features import extend_teacher_features, extract_teacher_features
from lelp.teacher.loading import load_teacher, read_teacher_config
from lelp.training.loop import TrainConfig, TrainResult, train_student


def eval_label_column(cfg: DistillConfig) -> str:
    """The eval file's label column: ``eval_label_column``, else ``label_column``; never a guess.

    An eval file is there to score the student, so it must have labels: with neither column
    named (unlabelled transfer data and no ``--eval-label-column``) the job is refused.
    """
    column = cfg.eval_label_column or cfg.label_column
    if not column:
        raise DataError(f"{Path(cfg.eval_path).name}: the eval file needs labels to score the student, and no label "
                        "column was named for it (the train data is read without labels): pass "
                        "--eval-label-column NAME", param="eval_label_column", code="eval_labels_required")
    return column


def check_labels(teacher_labels: list[str], train: TextDataset, evaluation: TextDataset | None,
                 cfg: DistillConfig, validation: TextDataset | None = None) -> None:
    """``lelp.data.label_checks.label_problem`` as a ``DataError`` (the service runs the same rule at submit)."""
    names = {"train": Path(cfg.train_path).name, "eval": Path(cfg.eval_path).name if cfg.eval_path else "",
             "validation": Path(cfg.validation_path).name if cfg.validation_path else ""}
    problem = label_problem(teacher_labels, label_counts(train),
                            label_counts(evaluation) if evaluation is not None else None, names=names,
                            validation_counts=label_counts(validation) if validation is not None else None)
    if problem is not None:
        raise DataError(problem.message, param=f"{problem.role}_path", code=problem.code)


def validation_label_column(cfg: DistillConfig) -> str | None:
    """The validation file's label column: ``validation_label_column`` ("" for none: its rows are then scored
    against the teacher's answers), else ``label_column``."""
    if cfg.validation_label_column is not None:
        return cfg.validation_label_column or None
    return cfg.label_column


def _validation_points(probs: np.ndarray, teacher_pred: np.ndarray, truth: np.ndarray) -> list[dict]:
    """A cascade curve on the validation rows as ``metrics.cascade.validation`` keeps it (no speed-ups)."""
    return [{k: p[k] for k in ("deferred_fraction", "accuracy", "threshold", "both_correct")}
            for p in cascade_curve(probs, teacher_pred, truth, points=100, paired=True)]


class RowView:
    """Rows ``rows`` of an (n, ...) array, indexed lazily (no copy of a memmap)."""

    def __init__(self, array, rows: np.ndarray):
        self.array, self.rows = array, rows
        self.shape = (len(rows), *getattr(array, "shape", (0, 0))[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx):
        return self.array[self.rows[idx]]

    def batch(self, indices: torch.Tensor, device: torch.device):
        return self.array.batch(torch.from_numpy(self.rows[indices.numpy()]), device)

    def __getattr__(self, name: str):
        if name == "row_lengths" and hasattr(self.array, "row_lengths"):  # what the GPU batch finder fits
            return lambda: np.asarray(self.array.row_lengths())[self.rows]
        raise AttributeError(name)


@dataclass
class CandidateResult:
    candidate: Candidate
    student: torch.nn.Module
    train: TrainResult
    validation_score: float
    hyperparameters: dict
    subclass_view: dict | None = None  # for the report: lelp.report.collect.subclass_section


class DistillJob:
    def __init__(self, config: DistillConfig, *, cache_dir=None, progress: ProgressCallback | None = None,
                 should_cancel: CancelCheck | None = None):
        self.requested = config  # student "auto" stays here; self.config names the kind being trained
        if config.student == AUTO_STUDENT:
            config = replace(config, student=AUTO_STUDENT_KINDS[0], student_options=None)
        self.config, self.cache_dir = config, cache_dir
        self.progress, self.should_cancel = progress, should_cancel
        self.device = resolve_device(config.device)

    # ----------------------------------------------------------------- load
    def load(self) -> None:
        cfg = self.config
        read = dict(text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                    label_column=cfg.label_column)
        self.train_data = read_table(cfg.train_path, **read)
        if cfg.eval_path:
            read["label_column"] = eval_label_column(cfg)
            self.eval_data = read_table(cfg.eval_path, **read)
        validation = read_table(cfg.validation_path, **{**read, "label_column": validation_label_column(cfg)}
                                ) if cfg.validation_path else None
        # Labels that cannot give a meaningful result are refused before the teacher's weights load.
        check_labels(read_teacher_config(cfg.teacher_dir).labels, self.train_data,
                     self.eval_data if cfg.eval_path else None, cfg, validation)
        self.teacher = load_teacher(cfg.teacher_dir, device=str(self.device))
        self.labels = list(self.teacher.info.labels)
        self.train_labels = np.asarray(encode_labels(self.train_data.labels, self.labels, source="train data"))
        self.train_size = len(self.train_data)  # the user's train rows; a validation file's rows follow them
        if cfg.eval_path:
            self.eval_labels = np.asarray(encode_labels(self.eval_data.labels, self.labels, source="eval data"))
            self.eval_rows = None
            self.train_rows = np.arange(len(self.train_data))
        else:  # hold out 10% of the labelled training rows as the test split
            self.eval_data = None
            self.train_rows, self.eval_rows = split_rows(self.train_labels, VALIDATION_FRACTION, cfg.seed + 7)
        # The validation rows pick the method / config (auto), the best epoch of every run, the temperature
        # and the cascade's thresholds: the user's validation file, else 10% of the training rows.
        if validation is not None:
            self._append_validation(validation)
        else:
            part, held = split_rows(self.train_labels[self.train_rows], VALIDATION_FRACTION, cfg.seed)
            self.fit_rows, self.validation_rows = self.train_rows[part], self.train_rows[held]
        self.kind = self._make_kind(cfg)

    def _append_validation(self, validation: TextDataset) -> None:
        """The validation file's rows become rows of the train table after the user's own, so that features,
        inputs and every index into them work unchanged; they are held out like a split would be."""
        labels = np.asarray(encode_labels(validation.labels, self.labels, source="validation data"))
        if len(validation) < HOLD_OUT_MINIMUM:
            raise DataError(f"{Path(self.config.validation_path).name}: {len(validation)} rows; a validation file "
                            f"needs at least {HOLD_OUT_MINIMUM}", param="validation_path", code="too_few_rows")
        train = self.train_data
        self.train_data = TextDataset(
            texts=train.texts + validation.texts,
            text_pairs=train.text_pairs + validation.text_pairs if train.text_pairs is not None else None,
            labels=train.labels + validation.labels,
            sha256=hashlib.sha256(f"{train.sha256}+validation:{validation.sha256}".encode()).hexdigest(),
            columns=train.columns)
        self.train_labels = np.concatenate([self.train_labels, labels])
        self.fit_rows = self.train_rows
        self.validation_rows = self.train_size + np.arange(len(validation))

    @property
    def validation_source(self) -> str:
        """Where the validation rows come from: "file" (the user's, like their traffic) or "split" (10% of the
        train rows); the job's metrics and its cascade's threshold rule both name it."""
        return "file" if self.config.validation_path else "split"

    def _make_kind(self, cfg: DistillConfig):
        return student_kind(cfg.student)(KindContext(
            teacher=self.teacher, student_base=cfg.student_base, options=dict(cfg.student_options or {}),
            max_length=cfg.max_length, device=self.device, cache_dir=self.cache_dir, progress=self.progress,
            should_cancel=self.should_cancel))

    def use_kind(self, kind: str) -> None:
        """Train ``kind`` from now on (the student search): same rows, features and variants, its own inputs."""
        if kind == self.config.student:
            return
        self.config = replace(self.config, student=kind)
        self.kind = self._make_kind(self.config)
        texts, pairs, sha = self._inputs_source
        self.train_inputs = self.kind.inputs(texts, pairs, sha)
        self.eval_inputs = (self.kind.inputs(self.eval_data.texts, self.eval_data.text_pairs, self.eval_data.sha256)
                            if self.eval_data is not None else None)

    # -------------------------------------------------------------- extract
    def extract(self) -> None:
        cfg = self.config
        common = dict(max_length=cfg.max_length, cache_dir=self.cache_dir, progress=self.progress,
                      should_cancel=self.should_cancel)
        self.train_features = extract_teacher_features(self.teacher, self.train_data.texts,
                                                       self.train_data.text_pairs,
                                                       dataset_sha256=self.train_data.sha256, **common)
        if self.eval_data is not None:
            self.eval_features = extract_teacher_features(self.teacher, self.eval_data.texts,
                                                          self.eval_data.text_pairs,
                                                          dataset_sha256=self.eval_data.sha256, **common)
        self.pool_logits, self.pool_embeddings = self.train_features.logits, self.train_features.embeddings
        self.pool_labels = self.train_labels
        texts, pairs, sha = self.train_data.texts, self.train_data.text_pairs, self.train_data.sha256
        self.augmented_rows = 0
        self.augment_variants = self._augment_variants()
        if self.augment_variants:
            # Variants of the fit rows only: validation and test rows are never augmented. Nothing
            # is copied: the variants are made when read, the features are one memmap.
            aug = augment_rows(texts, pairs, self.fit_rows, AugmentSpec(
                variants=self.augment_variants, seed=cfg.seed,
                mask_token=self.teacher.tokenizer.mask_token or "[MASK]"),
                dataset_sha256=sha, neighbours=self._word_neighbours(texts))
            feats = extend_teacher_features(self.teacher, self.train_features, aug.texts, aug.text_pairs,
                                            dataset_sha256=sha + "+" + aug.key, **common)
            n = len(texts)
            self.augmented_rows = len(aug.texts)
            self.aug_source_rows = aug.source_rows
            self.pool_logits, self.pool_embeddings = feats.logits, feats.embeddings
            self.pool_labels = np.concatenate([self.train_labels, np.full(len(aug.texts), -1)])
            self.fit_rows = np.concatenate([self.fit_rows, n + np.arange(len(aug.texts))])
            texts = ChainedTexts(texts, aug.texts)
            pairs = ChainedTexts(pairs, aug.text_pairs) if pairs is not None else None
            sha = aug.key + "+" + sha
        self._inputs_source = (texts, pairs, sha)
        self.train_inputs = self.kind.inputs(texts, pairs, sha)
        self.eval_inputs = (self.kind.inputs(self.eval_data.texts, self.eval_data.text_pairs, self.eval_data.sha256)
                            if self.eval_data is not None else None)

    def _augment_variants(self) -> int:
        """Variants per fit row: ``augment`` as given, or for "auto" from the data size and the device's
        budget (``lelp.data.augment.auto_variants``); deterministic, so a rerun hits the same caches."""
        value = self.config.augment
        if value == "auto":
            return auto_variants(len(self.fit_rows), gpu=self.device.type == "cuda")
        return int(value)

    def _word_neighbours(self, texts) -> WordNeighbours | None:
        """Nearest words in the teacher-distilled token table, for the students built on that table
        (``static``, ``cnn``: the table is made anyway); other kinds' variants use masks and n-grams only."""
        if not isinstance(self.kind, StaticKind):
            return None
        self.kind._table = self.kind.table()
        return WordNeighbours.build(self.kind._table, self.kind.ctx.tokenizer.get_vocab(),
                                    (texts[i] for i in self.fit_rows))

    def _build_student(self, subclasses: int):
        return self.kind.build(len(self.labels) * subclasses, self.labels, subclasses)

    # ---------------------------------------------------------------- train
    def candidate_hyperparameters(self, cand: Candidate) -> dict:
        """What a candidate trains with on this job's fit rows (after ``extract``: variants included)."""
        source = self.fit_rows[self.fit_rows < len(self.train_data)]  # variants never carry labels
        share = float((self.pool_labels[source] >= 0).mean()) if len(source) else 0.0
        return {**effective_hyperparameters(self.config, cand, rows=len(self.fit_rows),
                                            augmented=self.augment_variants > 0, labelled_share=share),
                "augment": self.augment_variants}

    def train_candidate(self, cand: Candidate, checkpoint: Path | None, on_checkpoint,
                        position: tuple[int, int] = (1, 1)) -> CandidateResult:
        """Train one candidate; ``position`` (1-based index, count) tells progress readers how far the search is."""
        cfg = self.config
        hp = self.candidate_hyperparameters(cand)
        report(self.progress, Progress(stage="fit_projector", message=cand.name, candidate=position[0],
                                       candidates=position[1]))
        # Rows held out for validation or test count as unlabelled here: their labels must not
        # shape the targets (the projector assigns them to the teacher's argmax class).
        target_labels = np.full_like(self.pool_labels, -1)
        target_labels[self.fit_rows] = self.pool_labels[self.fit_rows]
        targets, subclasses, _model = build_targets(
            cand.method, self.pool_logits, self.pool_embeddings, target_labels,
            subclasses=cand.subclasses, beta=cand.beta, tau=cand.tau, seed=cfg.seed,
            head_weight=self.teacher.head.weight.detach().cpu().numpy(), class_names=self.labels)
        rows = self.fit_rows
        torch.manual_seed(cfg.seed)
        student = self._build_student(subclasses)
        train_cfg = TrainConfig(epochs=hp["epochs"], learning_rate=hp["learning_rate"],
                                batch_size=hp["batch_size"], subclasses=subclasses, alpha=hp["alpha"],
                                tau=cand.tau, seed=cfg.seed, patience=hp["patience"])
        hint = build_hint(cand.method, student.hidden_size, RowView(self.pool_embeddings, rows))
        result = train_student(student, RowView(self.train_inputs, rows), targets[rows], self.pool_labels[rows],
                               train_cfg, hint=hint, device=self.device,
                               checkpoint_path=checkpoint, progress=self.progress,
                               should_cancel=self.should_cancel, on_checkpoint=on_checkpoint,
                               evaluate=lambda model: self._validation_score(model, subclasses))
        score = float(result.best_score) if result.best_score is not None else float("nan")
        view = self._subclass_view(targets, subclasses, target_labels)
        return CandidateResult(cand, student, result, score, {**hp, "subclasses": subclasses}, view)

    def train_baseline(self) -> CandidateResult | None:
        """"What the teacher bought you": the same student kind trained on the labelled fit rows with their
        hard labels only (``ce``; no teacher, no variants), chosen on the same validation split.

        None, with ``self.baseline_note`` saying why, when no fit row has a label."""
        from lelp.devices import distributed

        cfg = self.config
        if distributed.world_size() > 1:  # rank 0 alone gets here: no DDP partners for a second run
            self.baseline_note = "not trained in a multi-GPU job"
            return None
        n = len(self.train_data)
        rows = self.fit_rows[self.fit_rows < n]
        rows = rows[self.train_labels[rows] >= 0]
        if not len(rows):
            self.baseline_note = ("no labelled training rows: the training data has no label column, so there is "
                                  "nothing to train a student without the teacher on")
            return None
        cand = Candidate("ce", 1, DEFAULT_BETA, 1.0)
        hp = {**effective_hyperparameters(cfg, cand, rows=len(rows)), "augment": 0}
        report(self.progress, Progress(stage="train",
                                       message=f"no-teacher baseline: ce on {len(rows):,} labelled rows"))
        labels = self.train_labels[rows]
        targets = np.eye(len(self.labels), dtype=np.float32)[labels]
        torch.manual_seed(cfg.seed)
        student = self._build_student(1)
        train_cfg = TrainConfig(epochs=hp["epochs"], learning_rate=hp["learning_rate"],
                                batch_size=hp["batch_size"], subclasses=1, alpha=0.0, tau=1.0, seed=cfg.seed,
                                patience=hp["patience"])
        result = train_student(student, RowView(self.train_inputs, rows), targets, labels, train_cfg,
                               device=self.device, should_cancel=self.should_cancel,
                               evaluate=lambda model: self._validation_score(model, 1))
        score = float(result.best_score) if result.best_score is not None else float("nan")
        self.baseline_rows = int(len(rows))
        return CandidateResult(cand, student, result, score, {**hp, "subclasses": 1})

    def _subclass_view(self, targets: np.ndarray, subclasses: int, target_labels: np.ndarray) -> dict:
        """The report's "inside each class" sample of the training rows (augmented variants left out);
        rows belong to the class their targets were built for."""
        from lelp.report.collect import null_space_projector, subclass_section

        if not hasattr(self, "_null_basis"):
            self._null_basis = null_space_projector(self.teacher.head.weight.detach().cpu().numpy())
        n = len(self.train_data)
        classes = np.where(target_labels[:n] >= 0, target_labels[:n], np.asarray(self.pool_logits[:n]).argmax(1))
        return subclass_section(targets[:n], classes, subclasses, self.train_features.embeddings, self._null_basis,
                                self.train_data.texts, self.labels, seed=self.config.seed)

    def _predict_classes(self, student, inputs, subclasses: int) -> np.ndarray:
        return predict_class_log_probs(student, inputs, subclasses, self.device).argmax(1)

    def _validation_score(self, student, subclasses: int) -> float:
        rows = self.validation_rows
        pred = self._predict_classes(student, RowView(self.train_inputs, rows), subclasses)
        truth = self.train_labels[rows]
        teacher = self.train_features.logits[rows].argmax(1)
        truth = np.where(truth >= 0, truth, teacher)
        return float((pred == truth).mean())

    # ------------------------------------------------------------- evaluate
    def _eval_split(self):
        """The evaluation rows: (inputs, labels, teacher logits, texts, pairs)."""
        if self.eval_data is not None:
            return (self.eval_inputs, self.eval_labels, self.eval_features.logits, self.eval_data.texts,
                    self.eval_data.text_pairs)
        rows = self.eval_rows
        pairs = [self.train_data.text_pairs[i] for i in rows] if self.train_data.text_pairs else None
        return (RowView(self.train_inputs, rows), self.train_labels[rows], self.train_features.logits[rows],
                [self.train_data.texts[i] for i in rows], pairs)

    def eval_accuracy(self, result: CandidateResult) -> float | None:
        """Accuracy of a candidate of the current kind on the evaluation rows (reported, never chosen on)."""
        inputs, labels = self._eval_split()[:2]
        pred = self._predict_classes(result.student, inputs, result.hyperparameters["subclasses"])
        return classification_metrics(labels, pred, len(self.labels))["accuracy"]

    def describe_candidate(self, result: CandidateResult, work_dir: Path) -> dict:
        """Save a search candidate as an artifact under ``work_dir`` (as it would ship) for timing and size."""
        from lelp.artifacts import save_student

        out = Path(work_dir) / self.config.student
        manifest = {"labels": self.labels, "subclasses": result.hyperparameters["subclasses"],
                    "method": result.candidate.method, "hyperparameters": result.hyperparameters,
                    "max_length": self.config.max_length, "sources": {}}
        save_student(copy.deepcopy(result.student).cpu(), out, manifest, self.kind)
        return {"kind": self.config.student, "method": result.candidate.method, "artifact": str(out),
                "validation_accuracy": result.validation_score if result.validation_score == result.validation_score
                else None, "accuracy": self.eval_accuracy(result), "size_bytes": directory_size(out),
                "parameters": count_module_parameters(result.student)}

    def time_candidates(self, artifacts: dict[str, str]) -> dict:
        """Teacher and every candidate artifact timed in alternation on the evaluation sentences (CPU)."""
        from lelp.artifacts import HFClassifierPredictor, load_student

        texts, pairs = self._eval_split()[3:]
        teacher_cpu = HFClassifierPredictor(self.teacher.model.cpu(), self.teacher.tokenizer, self.labels,
                                            max_length=self.config.max_length)
        runners = {"teacher": (teacher_cpu.predict_proba, 512, 1.5)}
        for name, path in artifacts.items():
            runners[name] = (load_student(path).predict_proba, 2048, 1.5)
        return alternating_speeds(runners, texts, pairs)

    def evaluate(self, best: CandidateResult, results: list[CandidateResult],
                 baseline: CandidateResult | None = None) -> dict:
        inputs, labels, logits, texts, pairs = self._eval_split()
        raw_probs = np.exp(predict_class_log_probs(best.student, inputs, best.hyperparameters["subclasses"],
                                                   self.device))
        calibration, validation = self._calibrate(best)
        student_probs = apply_temperature(raw_probs, calibration["temperature"])
        student_pred = student_probs.argmax(1)
        teacher_pred = np.asarray(logits).argmax(1)
        c = len(self.labels)
        student_metrics = classification_metrics(labels, student_pred, c)
        if baseline is not None:
            base_pred = predict_class_log_probs(baseline.student, inputs, 1, self.device).argmax(1)
            base_metrics = classification_metrics(labels, base_pred, c)
            gain = (None if student_metrics.get("accuracy") is None or base_metrics.get("accuracy") is None
                    else student_metrics["accuracy"] - base_metrics["accuracy"])
            baseline_out = {"trained": True, "kind": self.config.student, "method": "ce",
                            "train_rows": self.baseline_rows, **base_metrics,
                            "validation_accuracy": baseline.validation_score
                            if baseline.validation_score == baseline.validation_score else None,
                            "accuracy_gain": gain, "epochs_run": baseline.train.epochs_run,
                            "best_epoch": baseline.train.best_epoch}
        else:
            baseline_out = {"trained": False, "kind": self.config.student, "method": "ce",
                            "reason": getattr(self, "baseline_note", "not trained")}
        self._eval_texts = (texts, pairs)
        self._eval_rows = (labels, student_probs, softmax_rows(logits))
        self._eval_raw_probs = raw_probs
        self.temperature = calibration["temperature"]
        # rows without a label are judged against the teacher's answer, as on validation
        truth = np.where(np.asarray(labels) >= 0, labels, teacher_pred)
        self._cascade_rows = (student_probs, teacher_pred, truth)
        for key, probs in (("eval_nll_before", raw_probs), ("eval_nll_after", student_probs)):
            value = nll(probs, np.asarray(labels))  # NaN without labels: JSON (and Postgres) take null
            calibration[key] = value if value == value else None
        return {
            "calibration": calibration,
            "cascade": {"validation": validation},
            "method": best.candidate.method,
            "student": {**student_metrics, "kind": self.config.student,
                        "parameters": count_module_parameters(best.student)},
            "teacher": {**classification_metrics(labels, teacher_pred, c),
                        "architecture": self.teacher.info.architecture,
                        "parameters": self.teacher.info.parameters or count_module_parameters(self.teacher.model),
                        "size_bytes": directory_size(self.config.teacher_dir)},
            "agreement": agreement(student_pred, teacher_pred),
            "baseline": baseline_out,
            "chosen": best.hyperparameters,
            # What the validation scores measure (lelp.report.analysis.VALIDATION_METRICS): "accuracy" only when
            # every held-out training row has a label; "validation_accuracy" is written only then.
            "validation_metric": self.validation_metric(),
            "candidates": [self._candidate_entry(r) for r in results],
            "training": best.train.summary(),
            "train_rows": int(len(self.fit_rows) - self.augmented_rows),
            "augmented_rows": int(self.augmented_rows),
            "validation_rows": int(len(self.validation_rows)) if self.validation_rows is not None else 0,
            "validation_source": self.validation_source,
            "eval_rows": int(len(labels)),
            "labels": self.labels,
        }

    def validation_metric(self) -> str:
        """``accuracy`` | ``teacher_agreement`` (no validation row has a label: ``_validation_score`` counts
        agreement with the teacher's argmax) | ``mixed``."""
        labelled = int((self.train_labels[self.validation_rows] >= 0).sum())
        if labelled == len(self.validation_rows):
            return "accuracy"
        return "teacher_agreement" if labelled == 0 else "mixed"

    def _candidate_entry(self, r: CandidateResult) -> dict:
        score = r.validation_score if r.validation_score == r.validation_score else None
        entry = {**r.hyperparameters, "validation_score": score, "epochs_run": r.train.epochs_run,
                 "best_epoch": r.train.best_epoch}
        if self.validation_metric() == "accuracy":
            entry["validation_accuracy"] = score  # the name before issue 19, kept where it is true
        return entry

    def _calibrate(self, best: CandidateResult) -> tuple[dict, dict]:
        """Fit the student's temperature on the validation rows and the cascade's validation curve
        (the only rows a threshold may be chosen on); truth: the label, else the teacher's answer."""
        rows = self.validation_rows
        probs = np.exp(predict_class_log_probs(best.student, RowView(self.train_inputs, rows),
                                               best.hyperparameters["subclasses"], self.device))
        teacher_pred = np.asarray(self.train_features.logits[rows]).argmax(1)
        truth = np.where(self.train_labels[rows] >= 0, self.train_labels[rows], teacher_pred)
        temperature = fit_temperature(probs, truth)
        calibrated = apply_temperature(probs, temperature)
        calibration = {"temperature": temperature, "fitted_on": "validation", "validation_rows": int(len(rows)),
                       "validation_nll_before": nll(probs, truth) if len(rows) else None,
                       "validation_nll_after": nll(calibrated, truth) if len(rows) else None}
        validation = {"rows": int(len(rows)), "teacher_accuracy": float((teacher_pred == truth).mean()) if len(rows)
                      else None, "student_accuracy": float((calibrated.argmax(1) == truth).mean()) if len(rows)
                      else None, "points": _validation_points(calibrated, teacher_pred, truth),
                      # lelp.cascade.point_for_target trusts a file's labels, bounds their noise
                      "source": self.validation_source}
        if (truth != teacher_pred).any():  # labelled rows: the teacher-agreement curve too (point_for_target)
            validation["agreement_points"] = _validation_points(calibrated, teacher_pred, teacher_pred)
        return calibration, validation

    def cascade_curve(self, metrics: dict) -> list[dict]:
        """The cascade's curve on the evaluation rows, speed-ups from the two measured throughputs."""
        student_probs, teacher_pred, truth = self._cascade_rows
        return cascade_curve(student_probs, teacher_pred, truth,
                             student_rows_per_s=metrics["student"].get("sentences_per_second"),
                             teacher_rows_per_s=metrics["teacher"].get("sentences_per_second"))

    def cascade_targets(self, metrics: dict) -> list[dict]:
        """For the standard targets (and a redistil's), the validation-chosen threshold on the eval rows."""
        student_probs, teacher_pred, truth = self._cascade_rows
        validation = metrics["cascade"]["validation"]
        if not validation.get("points") or not validation.get("teacher_accuracy"):
            return []
        reference = self.config.cascade_reference or {}
        targets = sorted({*STANDARD_TARGETS, *([float(reference["target"])] if "target" in reference else [])})
        out = []
        for target in targets:
            row = at_target(validation, student_probs, teacher_pred, truth, target)
            row["speedup"] = speedup(row["deferred_fraction"], metrics["student"].get("sentences_per_second"),
                                     metrics["teacher"].get("sentences_per_second"))
            out.append(row)
        if "target" in reference:
            after = next(r for r in out if r["target"] == float(reference["target"]))
            metrics["cascade"]["redistil"] = {**reference, "deferred_after": after["deferred_fraction"],
                                              "accuracy_after": after["accuracy"]}
        return out

    # --------------------------------------------------------------- report
    def _counts(self, encoded: np.ndarray) -> dict[str, int]:
        return {name: int((encoded == c).sum()) for c, name in enumerate(self.labels)}

    def report_data(self, best: CandidateResult) -> dict:
        """What ``report.html`` needs beyond ``metrics.json`` (bounded; see lelp.report.collect)."""
        import lelp
        from lelp.report.collect import REPORT_DATA_FORMAT, data_section, eval_section, token_lengths

        labels, student_probs, teacher_probs = self._eval_rows
        texts, pairs = self._eval_texts
        train = self.train_data
        lengths = token_lengths(self.teacher.tokenizer, train.texts, train.text_pairs, seed=self.config.seed)
        return {
            "format": REPORT_DATA_FORMAT, "labels": self.labels,
            "eval": eval_section(labels, student_probs, teacher_probs, texts, pairs, self.labels,
                                 seed=self.config.seed, student_raw_probs=self._eval_raw_probs),
            "subclasses": best.subclass_view,
            "data": data_section(self._counts(self.train_labels[:self.train_size]), self.train_size,
                                 self._counts(labels), len(labels),
                                 lengths, self.config.max_length),
            "provenance": {"library_version": lelp.__version__, "student": self.config.student,
                           "teacher_name": Path(self.config.teacher_dir).name},
        }

    # ----------------------------------------------------------------- save
    def save(self, best: CandidateResult, out_dir, metrics: dict) -> Path:
        from lelp.artifacts import HFClassifierPredictor, load_student, save_student

        cfg = self.config
        manifest = {
            "labels": self.labels, "subclasses": best.hyperparameters["subclasses"],
            "method": best.candidate.method, "hyperparameters": best.hyperparameters,
            "max_length": cfg.max_length,
            # The files' sha256, the same hashes the service reports for its datasets and teachers.
            "sources": {"teacher_sha256": self.teacher.info.sha256, "train_sha256": file_sha256(cfg.train_path),
                        "eval_sha256": file_sha256(cfg.eval_path) if cfg.eval_path else None,
                        "validation_sha256": file_sha256(cfg.validation_path) if cfg.validation_path else None},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "temperature": getattr(self, "temperature", 1.0),  # fitted on validation: lelp.cascade
        }
        out = save_student(best.student.cpu(), out_dir, manifest, self.kind)
        texts, pairs = self._eval_texts
        metrics["student"]["size_bytes"] = directory_size(out)
        teacher_cpu = HFClassifierPredictor(self.teacher.model.cpu(), self.teacher.tokenizer, self.labels,
                                            max_length=cfg.max_length)
        speed = alternating_speeds({"teacher": (teacher_cpu.predict_proba, 512, 1.5),
                                    "student": (load_student(out).predict_proba, 2048, 1.5)}, texts, pairs)
        for name in ("teacher", "student"):
            metrics[name]["sentences_per_second"] = speed["models"][name]["median_sentences_per_second"]
        metrics["student"]["x_teacher"] = speed["models"]["student"]["median_x_reference"]
        metrics["speed"] = speed
        metrics["cascade"]["curve"] = self.cascade_curve(metrics)
        metrics["cascade"]["targets"] = self.cascade_targets(metrics)
        return out

