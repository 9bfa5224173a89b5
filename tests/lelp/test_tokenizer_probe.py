"""Issue 14: the upload's tokenizer probe runs in a child process with a time and a memory limit."""

from __future__ import annotations

import shutil

import pytest

from lelp.errors import TeacherError
from lelp.uploads.tokenizer_probe import probe_model_dir
from tests.panicky import make_panicking_tokenizer


def test_a_clean_tokenizer_passes(tiny_teacher_dir) -> None:  # noqa: ANN001
    assert probe_model_dir(tiny_teacher_dir, convert_pickle=False) == {"tokenizer": "tokenizers"}


def test_a_panic_is_caught_in_the_child(tiny_teacher_dir, tmp_path) -> None:  # noqa: ANN001
    model = tmp_path / "m"
    shutil.copytree(tiny_teacher_dir, model)
    make_panicking_tokenizer(model)
    with pytest.raises(TeacherError, match="PanicException") as caught:
        probe_model_dir(model)
    assert caught.value.param == "file:tokenizer.json"


def test_the_time_limit_stops_the_child(tiny_teacher_dir) -> None:  # noqa: ANN001
    with pytest.raises(TeacherError, match="did not finish"):
        probe_model_dir(tiny_teacher_dir, timeout_s=0.01)


def test_the_memory_limit_applies_to_the_child(tiny_teacher_dir) -> None:  # noqa: ANN001
    with pytest.raises(TeacherError, match="refused"):
        probe_model_dir(tiny_teacher_dir, memory_bytes=1024**2)
