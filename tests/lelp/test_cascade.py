"""Calibration and the cascade's numbers (issue 22): temperature, curve, threshold choice, and what a job stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lelp.cascade import (
    apply_temperature,
    both_correct,
    cascade_accuracy,
    cascade_curve,
    choose_threshold,
    deferred_share,
    fit_temperature,
    meets_target,
    nll,
    point_for_target,
)
from tests.lelp.test_report import SMALL_NGRAM


def _overconfident(n: int = 2000, seed: int = 0):
    """A binary classifier right 70% of the time that always says 95-99%: T must come out > 1."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    right = rng.random(n) < 0.7
    pred = np.where(right, truth, 1 - truth)
    conf = rng.uniform(0.95, 0.99, n)
    probs = np.zeros((n, 2))
    probs[np.arange(n), pred] = conf
    probs[np.arange(n), 1 - pred] = 1 - conf
    return probs, truth


def test_temperature_fixes_an_overconfident_model_and_keeps_its_answers():
    probs, truth = _overconfident()
    t = fit_temperature(probs, truth)
    assert t > 1.5
    calibrated = apply_temperature(probs, t)
    assert np.allclose(calibrated.sum(1), 1)
    assert (calibrated.argmax(1) == probs.argmax(1)).all()
    assert nll(calibrated, truth) < nll(probs, truth) - 0.3
    assert abs(calibrated.max(1).mean() - 0.7) < 0.03  # confidence now matches accuracy


def test_a_calibrated_model_keeps_temperature_one():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 5000)
    truth = (rng.random(5000) < conf).astype(int)  # says p for class 1, right with probability p
    probs = np.stack([1 - conf, conf], 1)
    assert 0.85 < fit_temperature(probs, truth) < 1.15
    assert fit_temperature(probs, np.full(5000, -1)) == 1.0  # nothing to fit on


def test_curve_defers_the_least_confident_rows_first():
    # rows 0..3: the student is wrong on the two it is least sure of; the teacher is right everywhere
    probs = np.array([[0.45, 0.55], [0.6, 0.4], [0.1, 0.9], [0.95, 0.05]])
    truth = np.array([0, 1, 1, 0])
    teacher = truth.copy()
    curve = cascade_curve(probs, teacher, truth, student_rows_per_s=1000.0, teacher_rows_per_s=10.0, points=4)
    assert [p["deferred_fraction"] for p in curve] == [0, 0.25, 0.5, 0.75, 1.0]
    assert [p["accuracy"] for p in curve] == [0.5, 0.75, 1.0, 1.0, 1.0]
    assert curve[0]["speedup"] == pytest.approx(100.0)
    assert curve[-1]["speedup"] == pytest.approx(1 / 1.01, rel=1e-3)  # all deferred: a bit slower than the teacher
    # the threshold of each point defers exactly that share
    for p in curve:
        assert deferred_share(probs, p["threshold"]) == pytest.approx(p["deferred_fraction"])
        assert cascade_accuracy(probs, teacher, truth, p["threshold"]) == pytest.approx(p["accuracy"])


def test_threshold_choice_meets_the_target_with_the_fewest_rows():
    points = [{"deferred_fraction": 0.0, "accuracy": 0.80, "threshold": 0.0},
              {"deferred_fraction": 0.1, "accuracy": 0.86, "threshold": 0.7},
              {"deferred_fraction": 0.3, "accuracy": 0.895, "threshold": 0.8},
              {"deferred_fraction": 1.0, "accuracy": 0.90, "threshold": 1.01}]
    assert choose_threshold(points, target_fraction=0.95, teacher_accuracy=0.9)["deferred_fraction"] == 0.1
    assert choose_threshold(points, target_fraction=0.99, teacher_accuracy=0.9)["deferred_fraction"] == 0.3
    assert choose_threshold(points, target_fraction=1.0, teacher_accuracy=0.9)["deferred_fraction"] == 1.0
    assert choose_threshold(points, max_deferred_fraction=0.2)["threshold"] == 0.7
    assert choose_threshold(points, max_deferred_fraction=0.0)["deferred_fraction"] == 0.0


def test_labelled_validation_rows_never_defer_less_than_agreement_with_the_teacher_needs():
    # the demo's case: on its (labelled) validation rows the student beats the teacher, so the labels alone
    # would defer nothing, while it disagrees with the teacher on 15% of them
    labels = [{"deferred_fraction": f, "accuracy": a, "threshold": t}
              for f, a, t in [(0.0, 0.87, 0.5), (0.1, 0.868, 0.63), (0.3, 0.862, 0.8), (1.0, 0.86, 1.01)]]
    agreement = [{"deferred_fraction": f, "accuracy": a, "threshold": t}
                 for f, a, t in [(0.0, 0.85, 0.5), (0.1, 0.92, 0.63), (0.3, 0.975, 0.8), (1.0, 1.0, 1.01)]]
    alone = {"points": labels, "teacher_accuracy": 0.86}
    assert point_for_target(alone, 0.99)["deferred_fraction"] == 0.0
    both = {**alone, "agreement_points": agreement}
    assert point_for_target(both, 0.9)["deferred_fraction"] == 0.1  # agreement 0.92 >= 0.9
    chosen = point_for_target(both, 0.97)
    assert chosen == labels[2]  # the labels' point at the share agreement needs: its accuracy, its threshold
    # where the labels are the stricter curve, they decide
    strict = {"points": [{**p, "accuracy": 0.70} for p in labels[:2]] + labels[2:], "teacher_accuracy": 0.86,
              "agreement_points": agreement}
    assert point_for_target(strict, 0.9)["deferred_fraction"] == 0.3


def test_both_correct_counts_the_rows_where_cascade_and_teacher_are_right():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], 300)
    teacher, truth = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    order = np.argsort(probs.max(1), kind="stable")
    fractions = both_correct(probs, teacher, truth)
    for k in (0, 1, 57, 150, 299, 300):
        answer = probs.argmax(1)
        answer[order[:k]] = teacher[order[:k]]
        assert fractions[k] == pytest.approx(np.mean((answer == truth) & (teacher == truth)))
    curve = cascade_curve(probs, teacher, truth, points=10, paired=True)
    assert curve[-1]["both_correct"] == pytest.approx(np.mean(teacher == truth), abs=1e-5)  # all deferred


def test_a_target_is_met_only_with_standard_errors_to_spare():
    # 1 point above 99% of a teacher at 85%: enough on 100,000 rows, noise on 872 (SST-2 dev's size)
    point = {"accuracy": 0.8415 + 0.01, "both_correct": 0.80}
    assert meets_target(point, 0.99, 0.85, 100_000)
    assert not meets_target(point, 0.99, 0.85, 872)
    assert meets_target(point, 0.99, 0.85, 872, z=0)
    # when the cascade answers as the teacher on every row, nothing is uncertain: the plain rule
    alike = {"accuracy": 0.85, "both_correct": 0.85}
    assert meets_target(alike, 1.0, 0.85, 50)
    assert meets_target({"accuracy": 0.8416}, 0.99, 0.85, 50)  # a curve from before: no bound to apply


def test_validation_rows_from_a_file_are_trusted_for_their_labels_and_bounded_for_their_noise():
    points = [{"deferred_fraction": 0.0, "accuracy": 0.80, "both_correct": 0.74, "threshold": 0.5},
              {"deferred_fraction": 0.1, "accuracy": 0.845, "both_correct": 0.80, "threshold": 0.7},
              {"deferred_fraction": 0.3, "accuracy": 0.86, "both_correct": 0.84, "threshold": 0.9},
              {"deferred_fraction": 1.0, "accuracy": 0.85, "both_correct": 0.85, "threshold": 1.000001}]
    agreement = [{**p, "accuracy": a} for p, a in zip(points, (0.86, 0.9, 0.95, 1.0), strict=True)]
    split = {"rows": 5000, "teacher_accuracy": 0.85, "points": points, "agreement_points": agreement}
    # from the train rows: the agreement floor holds the 99% target to 99% agreement (everything deferred)
    assert point_for_target({**split, "source": "split"}, 0.99)["deferred_fraction"] == 1.0
    # from a file: no floor; 0.845 >= 0.8415 on its face, but 5,000 rows leave the bound short of it
    assert point_for_target({**split, "source": "file"}, 0.99)["deferred_fraction"] == 0.3
    assert point_for_target({**split, "source": "file", "rows": 2_000_000}, 0.99)["deferred_fraction"] == 0.1


def test_a_job_stores_its_temperature_curve_and_calibration(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv,
                                                           tmp_path):
    from lelp.artifacts import load_student
    from lelp.pipeline import DistillConfig, distill

    out = tmp_path / "student"
    distill(DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv),
                          eval_path=str(tiny_eval_csv), method="kd", epochs=2, max_length=16,
                          student="ngram", student_options=SMALL_NGRAM, device="cpu"), out,
            cache_dir=tmp_path / "cache")
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "lelp_student.json").read_text())
    cal = metrics["calibration"]
    assert cal["temperature"] == manifest["temperature"] > 0
    assert cal["validation_nll_after"] <= cal["validation_nll_before"] + 1e-9
    curve = metrics["cascade"]["curve"]
    assert curve[0]["deferred_fraction"] == 0 and curve[-1]["deferred_fraction"] == 1
    assert curve[0]["accuracy"] == pytest.approx(metrics["student"]["accuracy"], abs=1e-4)
    assert curve[-1]["accuracy"] == pytest.approx(metrics["teacher"]["accuracy"], abs=1e-4)
    speeds = [p["speedup"] for p in curve]
    assert all(a >= b for a, b in zip(speeds, speeds[1:], strict=False))  # more deferred, never faster
    ratio = metrics["student"]["sentences_per_second"] / metrics["teacher"]["sentences_per_second"]
    assert speeds[0] == pytest.approx(ratio, rel=1e-2)
    val = metrics["cascade"]["validation"]
    assert val["rows"] == metrics["validation_rows"] and len(val["points"]) > 2
    assert val["source"] == "split"  # 10% of the train rows: the agreement floor applies
    # labelled validation rows: the teacher-agreement curve too, on the same ranking (same shares and thresholds)
    assert [(p["deferred_fraction"], p["threshold"]) for p in val["agreement_points"]] == \
        [(p["deferred_fraction"], p["threshold"]) for p in val["points"]]
    assert val["agreement_points"][-1]["accuracy"] == 1.0
    # the artifact predicts with the temperature: its probabilities are the stored calibrated ones
    data = json.loads((out / "report_data.json").read_text())
    raw = np.asarray(data["eval"]["student_raw_probs"])
    assert np.allclose(apply_temperature(raw, cal["temperature"]), data["eval"]["student_probs"], atol=2e-3)
    texts = ["a good film", "a bad film", "nothing much"]
    predictor = load_student(out)
    assert predictor.temperature == cal["temperature"]
    probs = predictor.predict_proba(texts)
    predictor.temperature = 1.0
    assert np.allclose(apply_temperature(predictor.predict_proba(texts), cal["temperature"]), probs, atol=1e-5)
    html = (out / "report.html").read_text()
    assert 'id="cascade"' in html and 'data-metric="temperature"' in html
