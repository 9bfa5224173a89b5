"""Issue 14's hostile uploads, as (name, archive bytes or JSON body, expected status, expected code).

Shared by ``tests/reliability/test_hostile_models.py`` (each answers a 4xx with the error
shape) and ``benchmarks/hostile_memory.py`` (the API's memory across the whole sweep).
Everything is built from the tiny random BERT; each archive is a few KB.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

from tests.panicky import make_panicking_tokenizer


def tar_gz(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname="model")
    return buf.getvalue()


def edit_config(model: Path, **changes: object) -> None:
    config = json.loads((model / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (model / "config.json").write_text(json.dumps(config))


def _safetensors(model: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _append_raw(model: Path, value: str) -> None:
    text = (model / "config.json").read_text().rstrip()
    (model / "config.json").write_text(text[:-1] + ', "x": ' + value + "}")


def _deep(n: int) -> str:
    return "[" * n + "]" * n


CASES: dict[str, Callable[[Path], None]] = {
    "num_labels_10_million": lambda m: edit_config(m, num_labels=10_000_000, id2label=None, label2id=None),
    "hidden_size_8192_x_48_layers": lambda m: edit_config(m, hidden_size=8192, num_hidden_layers=48,
                                                           intermediate_size=32768),
    "hidden_size_negative": lambda m: edit_config(m, hidden_size=-5),
    "hidden_size_1e20_int": lambda m: (m / "config.json").write_text(
        (m / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": 100000000000000000000')),
    "hidden_size_1e20_float": lambda m: edit_config(m, hidden_size=1e20),
    "layers_zero": lambda m: edit_config(m, num_hidden_layers=0),
    "duplicate_labels_casefold": lambda m: edit_config(m, id2label={"0": "Positive", "1": "positive"}),
    "config_200k_deep": lambda m: _append_raw(m, _deep(200_000)),
    "config_100_deep": lambda m: _append_raw(m, _deep(100)),
    "auto_map_in_tokenizer_config": lambda m: (m / "tokenizer_config.json").write_text(json.dumps({
        **json.loads((m / "tokenizer_config.json").read_text()),
        "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}})),
    "auto_map_in_nested_text_config": lambda m: edit_config(m, text_config={"model_type": "bert", "auto_map": {
        "AutoModel": "evil.Evil"}}),
    "safetensors_overlapping_offsets": lambda m: _safetensors(m, {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24),
    "safetensors_offsets_outside_the_file": lambda m: _safetensors(m, {
        "a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 16),
    "safetensors_shape_does_not_fit_dtype": lambda m: _safetensors(m, {
        "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16),
    "safetensors_int64_overflowing_shape": lambda m: _safetensors(m, {
        "a": {"dtype": "F32", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 16]}}, b"\0" * 16),
    "safetensors_unknown_dtype": lambda m: _safetensors(m, {
        "a": {"dtype": "F31", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
    "safetensors_deep_header": lambda m: _safetensors(m, {"a": json.loads(_deep(500))}, b""),
    "tokenizer_that_panics": make_panicking_tokenizer,
}


def build_case(name: str, tiny_teacher_dir: Path, workdir: Path) -> bytes:
    """The tar.gz of the tiny teacher with case ``name`` applied."""
    model = workdir / name
    shutil.copytree(tiny_teacher_dir, model)
    CASES[name](model)
    return tar_gz(model)


#: JSON bodies and URIs: (name, path, body) posted with Content-Type application/json.
JSON_CASES: list[tuple[str, str, bytes]] = [
    ("teachers_body_100k_deep", "/v1/teachers", ("[" * 100_000).encode()),
    ("datasets_body_100k_deep", "/v1/datasets", ("[" * 100_000).encode()),
    ("teachers_body_100k_deep_closed", "/v1/teachers", _deep(100_000).encode()),
    ("jobs_body_100k_deep", "/v1/jobs", ("[" * 100_000).encode()),
]
