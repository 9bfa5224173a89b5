"""Labels that cannot give a meaningful result are refused before anything trains (issue 19).

The rule (``lelp.data.label_checks.label_problem``) is the one the service runs at submit on the
datasets' stored label counts (tests/app/test_submit_checks.py); here the library refuses the
same through its own ``DataError`` (the CLI: one line, exit 2), before the teacher's weights load.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lelp.cli import build_app
from lelp.data.label_checks import label_problem
from lelp.errors import DataError
from lelp.pipeline import DistillConfig, distill
from tests.tiny import make_text_rows, write_csv

TEACHER = ["negative", "positive"]
NAMES = {"train": "train.csv", "eval": "eval.csv"}


@pytest.mark.parametrize(("train", "evaluation", "expected"), [
    ({"negative": 5, "positive": 5}, {"negative": 2, "positive": 2}, None),
    ({}, {"negative": 2, "positive": 2}, None),                     # unlabelled transfer data: fine
    ({}, None, None),                                               # no labels at all: scored by agreement
    ({"Positive": 3, "0": 4}, None, None),                          # any case, indices: one class each
    ({"negative": 5, "positive": 5}, {}, ("eval", "eval_labels_required")),
    ({"positive": 9}, None, ("train", "single_class")),
    ({"positive": 9, "Positive": 2, "1": 3}, None, ("train", "single_class")),  # one class, three spellings
    ({"negative": 5, "positive": 5}, {"negative": 4}, ("eval", "single_class")),
    ({"negative": 5, "maybe": 1}, None, ("train", "unknown_label")),
    ({"negative": 5, "positive": 5}, {"negative": 1, "2": 1}, ("eval", "unknown_label")),
])
def test_label_problem(train, evaluation, expected) -> None:
    problem = label_problem(TEACHER, train, evaluation, names=NAMES)
    assert (problem.role, problem.code) == expected if expected else problem is None
    if problem is not None:
        assert NAMES[problem.role] in problem.message


def _rows(n: int, labels: tuple[str, ...] = ("negative", "positive"), seed: int = 0) -> list[dict]:
    return make_text_rows(n, labels=labels, seed=seed)


def _refused(teacher, tmp_path, code: str, param: str, **files) -> DataError:
    paths = {name: write_csv(tmp_path / f"{name}.csv", rows, columns=columns)
             for name, (rows, columns) in files.items()}
    cfg = DistillConfig(str(teacher), str(paths["train"]), eval_path=str(paths["eval"]) if "eval" in paths else None,
                        label_column=None if files["train"][1] == ("text",) else "label", student="ngram",
                        method="kd", epochs=1)
    with pytest.raises(DataError) as info:
        distill(cfg, tmp_path / "out")
    assert (info.value.code, info.value.param) == (code, param), info.value.message
    assert not (tmp_path / "out").exists()  # refused before anything was written
    return info.value


LABELLED, TEXT_ONLY = ("text", "label"), ("text",)


def test_eval_file_without_labels_is_refused_not_scored_against_a_guessed_column(tiny_teacher_dir, tmp_path):
    # Unlabelled transfer data and an eval file that has a "label" column: before, the eval file was
    # silently read with "label"; now an eval file needs its label column named.
    error = _refused(tiny_teacher_dir, tmp_path, "eval_labels_required", "eval_label_column",
                     train=(_rows(80), TEXT_ONLY), eval=(_rows(40, seed=2), LABELLED))
    assert "--eval-label-column" in error.message
    # A named label column that is empty in every row is no better.
    empty = [{"text": r["text"], "label": ""} for r in _rows(40, seed=2)]
    error = _refused(tiny_teacher_dir, tmp_path, "eval_labels_required", "eval_path",
                     train=(_rows(80), LABELLED), eval=(empty, LABELLED))
    assert "eval.csv has no labels" in error.message


def test_single_class_train_or_eval_and_unknown_labels_are_refused(tiny_teacher_dir, tmp_path):
    _refused(tiny_teacher_dir, tmp_path, "single_class", "train_path",
             train=(_rows(80, labels=("positive",)), LABELLED))
    error = _refused(tiny_teacher_dir, tmp_path, "single_class", "eval_path",
                     train=(_rows(80), LABELLED), eval=(_rows(40, labels=("negative",)), LABELLED))
    assert "'negative'" in error.message
    error = _refused(tiny_teacher_dir, tmp_path, "unknown_label", "eval_path",
                     train=(_rows(80), LABELLED), eval=(_rows(40, labels=("negative", "neutral")), LABELLED))
    assert "neutral" in error.message and "negative, positive" in error.message


def test_cli_refuses_with_one_line_and_exit_2(tiny_teacher_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", _rows(80), columns=TEXT_ONLY)
    dev = write_csv(tmp_path / "dev.csv", _rows(40, seed=2))
    args = ["distill", "--teacher", str(tiny_teacher_dir), "--train", str(train), "--eval", str(dev),
            "--label-column", "", "--out", str(tmp_path / "s"), "--student", "ngram", "--epochs", "1", "--quiet"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2, result.output
    assert "dev.csv: the eval file needs labels" in result.output and "Traceback" not in result.output
