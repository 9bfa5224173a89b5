"""The static student (a model2vec table from the teacher's encoder), the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lelp.artifacts import load_student, read_manifest
from lelp.errors import ConfigError, JobCancelled
from lelp.pipeline import DistillConfig, budget_epochs, distill

SMALL_STATIC = {"hidden": 16, "pca_dims": 8}


def static_config(teacher, train, eval_, **overrides) -> DistillConfig:
    base = dict(teacher_dir=str(teacher), train_path=str(train), eval_path=str(eval_), student="static",
                method="kd", student_options=SMALL_STATIC, max_length=32, epochs=2)
    base.update(overrides)
    return DistillConfig(**base)


def test_static_table_is_the_teachers_encoder_distilled_and_cached(tiny_teacher_dir, tmp_path):
    from lelp.students.kind import KindContext
    from lelp.students.static import StaticKind
    from lelp.teacher.loading import load_teacher

    teacher = load_teacher(tiny_teacher_dir)
    kind = StaticKind(KindContext(teacher=teacher, options={"pca_dims": 8}, cache_dir=tmp_path))
    table = kind.table()
    assert table.shape == (len(teacher.tokenizer), 8) and np.isfinite(table).all()
    assert len(list((tmp_path / "static_tables").glob("*.npy"))) == 1
    np.testing.assert_array_equal(kind.table(), table)  # read back from the cache
    # Frequent (low-rank) tokens are weighted down (Zipf / SIF), as in model2vec.
    norms = np.linalg.norm(table, axis=1)
    assert norms[:10].mean() < norms[-10:].mean()
    student = kind.build(4, ["negative", "positive"], 2)
    np.testing.assert_allclose(student.embeddings.weight.detach().numpy(), table)


def test_static_artifact_predicts_and_loads_as_a_model2vec_static_model(tiny_teacher_dir, tiny_train_csv,
                                                                        tiny_eval_csv, tmp_path):
    result = distill(static_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, method="lelp", subclasses=2),
                     tmp_path / "out", cache_dir=tmp_path / "cache")
    out = result.artifact_dir
    assert read_manifest(out)["kind"] == "static"
    predictor = load_student(out)
    texts = ["good great film", "bad awful plot", ""]
    probs = predictor.predict_proba(texts)
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    from model2vec import StaticModel

    m2v = StaticModel.from_pretrained(out)
    vectors = m2v.encode(texts[:2])
    batch = predictor.make_inputs(texts[:2], None).batch(torch.arange(2), torch.device("cpu"))
    pooled = predictor.student.embeddings(batch["ids"], batch["offsets"]).detach().numpy()
    np.testing.assert_allclose(vectors, pooled, rtol=1e-4, atol=1e-5)


def test_static_student_base_gives_another_vocabulary(tiny_teacher_dir, tiny_teacher_3class_dir, tiny_train_csv,
                                                      tiny_eval_csv, tmp_path):
    cfg = static_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, student_base=str(tiny_teacher_3class_dir))
    result = distill(cfg, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert load_student(result.artifact_dir).predict(["good film"])[0]["label"] in ("negative", "positive")


def test_bad_static_option_is_a_config_error(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path):
    cfg = static_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, student_options={"widht": 3})
    with pytest.raises(ConfigError, match="bad student option"):
        distill(cfg, tmp_path / "out", cache_dir=tmp_path / "cache")


# augmentation: tests/lelp/test_augment.py


# ------------------------------------------------------------------ budget, best epoch


def test_default_budget_gives_small_sets_enough_steps():
    small = DistillConfig(teacher_dir="t", train_path="x", student="static")
    assert budget_epochs(small, 1000) * 1000 / 64 >= 1000  # >= 1,000 optimiser steps on 1,000 rows
    assert budget_epochs(small, 60_000) == 5
    assert budget_epochs(DistillConfig(teacher_dir="t", train_path="x", epochs=7), 1000) == 7


def test_a_cnn_on_a_set_grown_with_variants_plans_fewer_epochs_but_never_fewer_steps():
    cnn = DistillConfig(teacher_dir="t", train_path="x", student="cnn")
    assert budget_epochs(cnn, 49_000) == 5 and budget_epochs(cnn, 49_000, augmented=True) == 3
    assert budget_epochs(cnn, 7_000, augmented=True) == budget_epochs(cnn, 7_000) == 14  # min_steps rules
    static = DistillConfig(teacher_dir="t", train_path="x", student="static")  # never measured: unchanged
    assert budget_epochs(static, 49_000, augmented=True) == 5
    assert budget_epochs(DistillConfig(teacher_dir="t", train_path="x", student="cnn", epochs=5), 49_000,
                         augmented=True) == 5


def _train_tiny(epochs, scores, checkpoint=None, should_cancel=None, patience=None, saved=None, ema_decay=0.0):
    from lelp.students.ngram import HashedInputs, HashingSpec, NgramStudent
    from lelp.training.loop import TrainConfig, train_student

    texts = [f"w{i % 7} w{i % 3} word" for i in range(64)]
    inputs = HashedInputs(HashingSpec(n_features=2**8), texts)
    targets = np.eye(2, dtype=np.float32)[np.arange(64) % 2]
    torch.manual_seed(0)
    student = NgramStudent(2, n_features=2**8, embedding_dim=4, hidden=8)
    calls = iter(scores)
    snapshots = []

    def evaluate(model):
        snapshots.append(model.head[-1].weight.detach().clone())
        return next(calls)

    result = train_student(student, inputs, targets, np.arange(64) % 2,
                           TrainConfig(epochs=epochs, learning_rate=1e-2, batch_size=16, patience=patience,
                                       ema_decay=ema_decay),
                           device="cpu", checkpoint_path=checkpoint, should_cancel=should_cancel,
                           on_checkpoint=saved.append if saved is not None else None, evaluate=evaluate)
    return student, result, snapshots


def test_best_epoch_weights_ship_and_patience_stops():
    student, result, snapshots = _train_tiny(6, [0.5, 0.8, 0.6, 0.7, 0.9, 0.9], patience=2)
    assert result.best_epoch == 2 and result.epochs_run == 4 and result.stopped_early
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert [h["val_score"] for h in result.history] == [0.5, 0.8, 0.6, 0.7]
    assert all(isinstance(h["train_loss"], float) for h in result.history)
    torch.testing.assert_close(student.head[-1].weight, snapshots[1])  # epoch 2's weights


@pytest.mark.slow
def test_best_epoch_survives_resume(tmp_path):
    scores = [0.5, 0.9, 0.6, 0.7]
    full, full_result, _ = _train_tiny(4, scores)
    ckpt = tmp_path / "c.pt"
    saved: list[str] = []
    with pytest.raises(JobCancelled):  # killed after the third epoch
        _train_tiny(4, scores, checkpoint=ckpt, should_cancel=lambda: len(saved) >= 3, saved=saved)
    resumed, result, _ = _train_tiny(4, scores[3:], checkpoint=ckpt)
    assert result.resumed_from_epoch == 3 and result.best_epoch == 2 == full_result.best_epoch
    assert [h["val_score"] for h in result.history] == scores
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a.to_dense() if a.is_sparse else a, b.to_dense() if b.is_sparse else b)


def test_a_moving_average_of_the_weights_is_what_is_scored_kept_and_resumed(tmp_path):
    scores = [0.5, 0.9, 0.6, 0.7]
    raw, _, raw_snapshots = _train_tiny(4, scores)
    averaged, result, snapshots = _train_tiny(4, scores, ema_decay=0.9)
    assert result.best_epoch == 2
    # the scored model is the average, not the trained weights (the same seed trains the same raw weights)
    assert not torch.allclose(snapshots[1], raw_snapshots[1])
    torch.testing.assert_close(averaged.head[-1].weight, snapshots[1])  # the best epoch's average ships
    ckpt = tmp_path / "c.pt"
    saved: list[str] = []
    with pytest.raises(JobCancelled):
        _train_tiny(4, scores, checkpoint=ckpt, should_cancel=lambda: len(saved) >= 3, saved=saved, ema_decay=0.9)
    resumed, again, resumed_snapshots = _train_tiny(4, scores[3:], checkpoint=ckpt, ema_decay=0.9)
    assert again.resumed_from_epoch == 3 and again.best_epoch == 2
    torch.testing.assert_close(resumed.head[-1].weight, averaged.head[-1].weight)
    # epoch 4's average after a resume is the uninterrupted run's: the average itself was restored
    torch.testing.assert_close(resumed_snapshots[0], snapshots[3])


def test_distill_reports_epochs_run_best_epoch_and_history(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv,
                                                           tmp_path):
    result = distill(static_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, epochs=3),
                     tmp_path / "out", cache_dir=tmp_path / "cache")
    training = json.loads((tmp_path / "out" / "metrics.json").read_text())["training"]
    assert training["epochs_run"] == 3 and 1 <= training["best_epoch"] <= 3
    assert [h["epoch"] for h in training["history"]] == [1, 2, 3]
    best = max(h["val_score"] for h in training["history"])
    assert training["history"][training["best_epoch"] - 1]["val_score"] == best
    assert result.metrics["candidates"][0]["best_epoch"] == training["best_epoch"]


# ------------------------------------------------------------------------ make-teacher


@pytest.mark.slow
def test_make_teacher_holds_out_rows_and_stores_its_accuracy(tiny_teacher_dir, tmp_path):
    from lelp.training.make_teacher import TEACHER_METRICS, TeacherTrainingConfig, make_teacher, teacher_holdout_split
    from tests.tiny import make_text_rows, write_csv

    labels = np.array([0, 1] * 100)
    part, held = teacher_holdout_split(labels, 0.1, 0)
    assert len(held) == 20 and not set(part) & set(held) and len(part) + len(held) == 200
    again = teacher_holdout_split(labels, 0.1, 0)
    assert held.tolist() == again[1].tolist()

    train = write_csv(tmp_path / "t.csv", make_text_rows(200, seed=3))
    out = make_teacher(tiny_teacher_dir, train, tmp_path / "teacher",
                       config=TeacherTrainingConfig(epochs=2, max_length=16, batch_size=32))
    stored = json.loads((out / TEACHER_METRICS).read_text())
    assert stored["held_out_rows"] == 20 and stored["train_rows"] == 180
    assert stored["best_epoch"] in (1, 2) and len(stored["history"]) == stored["epochs_run"]
    assert stored["held_out_accuracy"] == max(h["val_score"] for h in stored["history"])
