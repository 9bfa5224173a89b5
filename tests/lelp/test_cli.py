"""The library's command line: real runs on a tiny teacher, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lelp.cli import build_app
from tests.tiny import make_text_rows, write_csv

runner = CliRunner()
SMALL = ["--epochs", "1", "--max-length", "32", "--subclasses", "2"]


def invoke(*args: str):
    return runner.invoke(build_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def student_dir(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "student"
    result = invoke("distill", "--teacher", tiny_teacher_dir, "--train", tiny_train_csv, "--eval", tiny_eval_csv,
                    "--out", out, "--method", "lelp", "--student", "ngram", "--quiet", *SMALL)
    assert result.exit_code == 0, result.output
    return out


def test_distill_writes_metrics_json(student_dir):
    metrics = json.loads((student_dir / "metrics.json").read_text())
    assert metrics["method"] == "lelp"
    for side in ("student", "teacher"):
        assert set(metrics[side]) >= {"accuracy", "macro_f1", "parameters", "sentences_per_second"}
    assert "agreement" in metrics


def test_predict_prints_one_json_object_per_input(student_dir, tiny_teacher_dir):
    for model in (student_dir, tiny_teacher_dir):
        result = invoke("predict", "--model", model, "good film", "bad plot")
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
        assert len(lines) == 2
        assert set(lines[0]) == {"label", "score", "probabilities"}
        assert set(lines[0]["probabilities"]) == {"negative", "positive"}


def test_evaluate_prints_json_on_last_line(student_dir, tiny_eval_csv):
    result = invoke("evaluate", "--model", student_dir, "--data", tiny_eval_csv)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows"] == 40 and 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.output


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty"),
        (b"text,label\n", "no rows"),
        (b"sentence,label\ngood,positive\n", "no column 'text'"),
        (b"text,label\ngood,maybe\n", "unknown label"),
        (b"text,label\n\xff\xfe bad bytes \xff,positive\n", "UTF-8"),
    ],
)
def test_bad_data_gets_one_line_error(content, needle, tiny_teacher_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    _one_line_error(invoke("distill", "--teacher", tiny_teacher_dir, "--train", bad, "--out", tmp_path / "o",
                           "--quiet"), needle)


@pytest.mark.parametrize(("option", "value"), [("--alpha", "some"), ("--alpha", "2"), ("--augment", "many")])
def test_bad_auto_or_number_options_get_one_line_errors(option, value, tiny_teacher_dir, tiny_train_csv, tmp_path):
    _one_line_error(invoke("distill", "--teacher", tiny_teacher_dir, "--train", tiny_train_csv, "--out", tmp_path / "o",
                           "--quiet", option, value), option.lstrip("-"))


def test_evaluate_with_bad_data_and_missing_model(student_dir, tmp_path):
    bad = write_csv(tmp_path / "x.csv", [{"text": "a", "label": "nope"}])
    _one_line_error(invoke("evaluate", "--model", student_dir, "--data", bad), "unknown label")
    _one_line_error(invoke("predict", "--model", tmp_path / "missing", "hi"), "missing")


def test_data_formats_tsv_jsonl_parquet_and_integer_labels(tiny_teacher_dir, tmp_path, student_dir):
    import pandas as pd

    rows = make_text_rows(40, seed=9)
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].map({"negative": "0", "positive": "1"})  # integers work too
    frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.tsv", "d.jsonl", "d.parquet"):
        result = invoke("evaluate", "--model", student_dir, "--data", tmp_path / name)
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout.strip().splitlines()[-1])["rows"] == 40


def test_make_teacher_builds_a_loadable_classifier(tiny_teacher_dir, tiny_train_csv, tmp_path):
    out = tmp_path / "teacher"
    result = invoke("make-teacher", "--base", tiny_teacher_dir, "--train", tiny_train_csv, "--out", out,
                    "--epochs", "1", "--max-length", "32")
    assert result.exit_code == 0, result.output
    # its bar names what runs: the teacher being fine-tuned, not a student being trained
    assert "fine-tuning the teacher, epoch 1" in result.output and "training student" not in result.output
    from lelp.teacher.loading import read_teacher_config

    info = read_teacher_config(out)
    assert info.labels == ["negative", "positive"] and info.num_labels == 2


def test_make_teacher_names_its_labels(tiny_teacher_dir, tmp_path):
    """``--labels`` names 0/1 classes, so the teacher (and every student of it) answers in words."""
    from lelp.teacher.loading import read_teacher_config
    from lelp.training.make_teacher import class_names

    rows = [{**r, "label": {"negative": "0", "positive": "1"}[r["label"]]} for r in make_text_rows(60, seed=4)]
    train = write_csv(tmp_path / "zero_one.csv", rows)
    out = tmp_path / "teacher"
    result = invoke("make-teacher", "--base", tiny_teacher_dir, "--train", train, "--out", out, "--epochs", "1",
                    "--max-length", "32", "--labels", "negative,positive")
    assert result.exit_code == 0, result.output
    assert read_teacher_config(out).labels == ["negative", "positive"]
    # the data's own labels only choose the order; a wrong count is a one-line error, exit 2
    assert class_names(["a", "b"], ["b", "a"]) == (["b", "a"], ["b", "a"])
    assert class_names(["0", "1"], ["neg", "pos"]) == (["neg", "pos"], ["0", "1"])
    _one_line_error(invoke("make-teacher", "--base", tiny_teacher_dir, "--train", train, "--out", tmp_path / "t2",
                           "--labels", "a,b,c"), "--labels names 3 classes")
    _one_line_error(invoke("make-teacher", "--base", tiny_teacher_dir, "--train", train, "--out", tmp_path / "t3",
                           "--labels", "a,a"), "distinct")


def test_export_writes_a_checked_onnx_package_and_records_it(student_dir, tiny_eval_csv, tmp_path):
    pytest.importorskip("onnxruntime")
    result = invoke("export", student_dir, "--format", "onnx", "--quantize", "int8", "--out", tmp_path / "s.zip",
                    "--eval", tiny_eval_csv)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["variant"] == "onnx-int8" and report["check"]["rows"] == 40 and report["check"]["passed"]
    assert (tmp_path / "s.zip").stat().st_size > 0
    metrics = json.loads((student_dir / "metrics.json").read_text())
    assert metrics["export"]["onnx-int8"]["int8"]["accuracy"] == report["check"]["int8"]["accuracy"]


def test_export_mistakes_are_one_line_errors(student_dir, tmp_path):
    _one_line_error(invoke("export", student_dir, "--format", "tflite", "--out", tmp_path / "x.zip"), "format")
    _one_line_error(invoke("export", tmp_path, "--out", tmp_path / "x.zip"), "not a LELP student artifact")
