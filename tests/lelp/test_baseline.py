""""What the teacher bought you": the same student kind trained on the labelled rows alone (ce), beside
the distilled one on the same evaluation rows, in metrics.json, the report and the CLI's summary."""

from __future__ import annotations

import json

import pytest

from lelp.pipeline import DistillConfig, distill

SMALL = {"hidden": 16, "pca_dims": 8}


def _config(teacher, train, eval_, **overrides) -> DistillConfig:
    base = dict(teacher_dir=str(teacher), train_path=str(train), eval_path=str(eval_), student="static",
                method="kd", student_options=SMALL, max_length=32, epochs=2, augment=0)
    base.update(overrides)
    return DistillConfig(**base)


def test_baseline_is_trained_on_the_labelled_rows_and_reported(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv,
                                                               tmp_path):
    result = distill(_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv), tmp_path / "out",
                     cache_dir=tmp_path / "cache")
    base, student = result.metrics["baseline"], result.metrics["student"]
    assert base["trained"] and base["method"] == "ce" and base["kind"] == "static"
    assert base["train_rows"] == result.metrics["train_rows"]  # every fit row is labelled here
    assert base["rows"] == student["rows"] == result.metrics["eval_rows"]  # the same evaluation rows
    assert 0.0 <= base["accuracy"] <= 1.0
    assert base["accuracy_gain"] == pytest.approx(student["accuracy"] - base["accuracy"])
    assert "baseline" in result.metrics["stage_seconds"]
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["baseline"]["accuracy"] == pytest.approx(base["accuracy"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Without the teacher, the same static student" in html
    assert f"{base['accuracy'] * 100:.1f}%" in html and "no teacher" in html


def test_without_labelled_rows_the_report_says_so(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path):
    from lelp.report.analysis import baseline_line

    result = distill(_config(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, label_column=None,
                             eval_label_column="label"), tmp_path / "out",
                     cache_dir=tmp_path / "cache")
    base = result.metrics["baseline"]
    assert base["trained"] is False and "no labelled training rows" in base["reason"]
    assert "accuracy" not in base
    assert "no labelled training rows" in baseline_line(result.metrics)
    assert "no labelled training rows" in (tmp_path / "out" / "report.html").read_text()
