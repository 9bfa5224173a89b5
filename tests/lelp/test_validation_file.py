"""A validation file (issue 22's lever): rows like the traffic replace the 10% held out of the train rows.

They pick the best epoch and the temperature and set the cascade's thresholds; they are never
trained on or augmented. Flipped labels make the difference visible: a job that scored its
validation on the file sees a student that is almost always "wrong" there, one that ignored
it would not.
"""

from __future__ import annotations

import json

import pytest

from lelp.errors import DataError
from lelp.pipeline import DistillConfig, distill
from tests.lelp.test_report import SMALL_NGRAM
from tests.tiny import make_text_rows, write_csv


def _config(teacher, train, evaluation, validation, **extra) -> DistillConfig:
    return DistillConfig(teacher_dir=str(teacher), train_path=str(train), eval_path=str(evaluation),
                         validation_path=str(validation), method="kd", epochs=2, max_length=16, student="ngram",
                         student_options=SMALL_NGRAM, device="cpu", **extra)


def _distil(tmp_path, teacher, train, evaluation, rows: list[dict], **extra) -> tuple:
    """Run a job with ``rows`` as its validation file; its output directory and metrics."""
    validation = write_csv(tmp_path / "validation.csv", rows)
    out = tmp_path / "student"
    distill(_config(teacher, train, evaluation, validation, **extra), out, cache_dir=tmp_path / "cache")
    return out, json.loads((out / "metrics.json").read_text())


def test_validation_rows_come_from_the_file_and_are_never_trained_on(tiny_teacher_dir, tiny_train_csv,
                                                                     tiny_eval_csv, tmp_path):
    from lelp.artifacts import load_student

    # 4 negative rows to 1 positive: unlike the balanced train rows, so a score from a split would differ
    rows = [r for r in make_text_rows(100, seed=5) if r["label"] == "negative"][:40] + \
        [r for r in make_text_rows(40, seed=6) if r["label"] == "positive"][:10]
    out, metrics = _distil(tmp_path, tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, rows, augment=1)
    assert metrics["validation_source"] == "file"
    assert metrics["validation_rows"] == 50 == metrics["cascade"]["validation"]["rows"]
    # the cascade's rule for such rows (lelp.cascade.point_for_target): labels trusted, a bound on their noise
    assert metrics["cascade"]["validation"]["source"] == "file"
    assert all(0 <= p["both_correct"] <= p["accuracy"] for p in metrics["cascade"]["validation"]["points"])
    # every train row is fit (none held out) and has its variant; the file's rows are neither
    assert metrics["train_rows"] == 160 == metrics["augmented_rows"]
    assert metrics["validation_metric"] == "accuracy"
    # the best epoch's score is the shipped student's accuracy on the file's rows (temperature keeps argmax)
    predictor = load_student(out)
    pred = predictor.predict_proba([r["text"] for r in rows]).argmax(1)
    expected = sum(int(p) == (r["label"] == "positive") for p, r in zip(pred, rows, strict=True)) / len(rows)
    assert metrics["candidates"][0]["validation_score"] == pytest.approx(expected)
    manifest = json.loads((out / "lelp_student.json").read_text())
    assert len(manifest["sources"]["validation_sha256"]) == 64
    assert manifest["sources"]["validation_sha256"] in (out / "report.html").read_text()  # provenance names it
    data = json.loads((out / "report_data.json").read_text())["data"]
    assert data["train_rows"] == 160 and data["train_label_counts"] == {"negative": 80, "positive": 80}


def test_an_unlabelled_validation_file_is_scored_against_the_teacher(tiny_teacher_dir, tiny_train_csv,
                                                                     tiny_eval_csv, tmp_path):
    rows = [{"text": r["text"], "label": ""} for r in make_text_rows(40, seed=6)]
    _, metrics = _distil(tmp_path, tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, rows, augment=0)
    assert metrics["validation_metric"] == "teacher_agreement"
    assert metrics["cascade"]["validation"]["teacher_accuracy"] == 1.0  # the teacher agrees with itself
    assert metrics["validation_rows"] == 40


@pytest.mark.parametrize("rows, message", [
    (make_text_rows(5, seed=7), "at least 20"),
    ([{"text": "fine", "label": "maybe"}] * 30, "unknown label"),
])
def test_a_bad_validation_file_is_a_clear_error(rows, message, tiny_teacher_dir, tiny_train_csv, tiny_eval_csv,
                                                tmp_path):
    validation = write_csv(tmp_path / "validation.csv", rows)
    with pytest.raises(DataError, match=message):
        distill(_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, validation), tmp_path / "student",
                cache_dir=tmp_path / "cache")
