"""Teacher checks and safe loading: every refusal, pickle safety, and the generic head hook."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lelp.errors import TeacherError
from lelp.teacher.loading import load_teacher, read_teacher_config
from tests.tiny import make_tiny_teacher

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def teacher_copy(tiny_teacher_dir, tmp_path) -> Path:
    """A private copy of the tiny teacher that a test may damage."""
    return Path(shutil.copytree(tiny_teacher_dir, tmp_path / "teacher"))


def _edit_config(root: Path, **changes) -> None:
    config = json.loads((root / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (root / "config.json").write_text(json.dumps(config))


# --------------------------------------------------------------------------- read_teacher_config


def test_reads_tiny_bert_info(tiny_teacher_dir):
    from safetensors.torch import load_file

    info = read_teacher_config(tiny_teacher_dir)
    expected = sum(t.numel() for t in load_file(tiny_teacher_dir / "model.safetensors").values())
    assert info.architecture == "BertForSequenceClassification"
    assert info.model_type == "bert"
    assert info.num_labels == 2 and info.labels == ["negative", "positive"]
    assert info.hidden_size == 32
    assert info.parameters == expected
    assert info.weights_file == "model.safetensors"
    assert len(info.sha256) == 64


def test_read_config_imports_neither_torch_nor_transformers(tiny_teacher_dir):
    code = (
        "import sys, lelp.teacher.loading as t; info = t.read_teacher_config(sys.argv[1]); "
        "assert info.num_labels == 2; "
        "bad = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, str(tiny_teacher_dir)], check=True, cwd=ROOT)


def test_labels_sorted_by_integer_id(teacher_copy):
    others = {str(i): f"x{i}" for i in (1, 3, 4, 5, 6, 7, 8, 9)}
    _edit_config(teacher_copy, id2label={"10": "c", "2": "b", "0": "a"} | others)
    labels = read_teacher_config(teacher_copy).labels
    assert labels[:3] == ["a", "x1", "b"] and labels[10] == "c"


def test_sha256_is_stable_and_tracks_contents(tiny_teacher_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_teacher_dir, tmp_path / "same"))
    assert read_teacher_config(copy).sha256 == read_teacher_config(tiny_teacher_dir).sha256
    (copy / "README.md").write_text("not part of the model")
    assert read_teacher_config(copy).sha256 == read_teacher_config(tiny_teacher_dir).sha256
    other = make_tiny_teacher(tmp_path / "other", seed=1)
    assert read_teacher_config(other).sha256 != read_teacher_config(tiny_teacher_dir).sha256


def test_sharded_safetensors_are_counted_and_loaded(tiny_teacher_dir, tmp_path):
    teacher = load_teacher(tiny_teacher_dir)
    sharded = tmp_path / "sharded"
    teacher.model.save_pretrained(sharded, max_shard_size="20KB")
    teacher.tokenizer.save_pretrained(sharded)
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    info = read_teacher_config(sharded)
    assert info.weights_file == "model.safetensors.index.json"
    assert info.parameters == read_teacher_config(tiny_teacher_dir).parameters
    loaded = load_teacher(sharded)
    for a, b in zip(loaded.model.state_dict().values(), teacher.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_missing_shard_is_refused(tiny_teacher_dir, tmp_path):
    sharded = tmp_path / "sharded"
    load_teacher(tiny_teacher_dir).model.save_pretrained(sharded, max_shard_size="20KB")
    shutil.copy(tiny_teacher_dir / "vocab.txt", sharded)
    next(sharded.glob("model-*.safetensors")).unlink()
    with pytest.raises(TeacherError, match="missing"):
        read_teacher_config(sharded)


# Each refusal: a damage to a good teacher directory, and words the message must contain.
def _no_config(root: Path) -> None:
    (root / "config.json").unlink()


def _bad_json(root: Path) -> None:
    (root / "config.json").write_text("{not json")


def _auto_map(root: Path) -> None:
    _edit_config(root, auto_map={"AutoModelForSequenceClassification": "modeling_evil.EvilModel"})


def _no_architectures(root: Path) -> None:
    _edit_config(root, architectures=None)


def _base_model(root: Path) -> None:
    _edit_config(root, architectures=["BertModel"])


def _one_label(root: Path) -> None:
    _edit_config(root, id2label={"0": "only"}, label2id={"only": 0}, num_labels=1)


def _one_label_by_count(root: Path) -> None:
    _edit_config(root, id2label=None, label2id=None, num_labels=1)


def _no_weights(root: Path) -> None:
    (root / "model.safetensors").unlink()


def _no_tokenizer(root: Path) -> None:
    for name in ("vocab.txt", "tokenizer.json"):
        (root / name).unlink()


def _bad_safetensors(root: Path) -> None:
    (root / "model.safetensors").write_bytes(b"\xff" * 16)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_no_config, "no config.json"),
        (_bad_json, "not valid JSON"),
        (_auto_map, "auto_map"),
        (_no_architectures, "sequence classifier"),
        (_base_model, "sequence classifier"),
        (_one_label, "at least 2"),
        (_one_label_by_count, "at least 2"),
        (_no_weights, "no weights"),
        (_no_tokenizer, "no tokenizer files"),
        (_bad_safetensors, "not a valid safetensors"),
    ],
)
def test_refusals(teacher_copy, damage, words):
    damage(teacher_copy)
    with pytest.raises(TeacherError, match=words) as err:
        read_teacher_config(teacher_copy)
    assert "\n" not in err.value.message and err.value.code == "invalid_teacher"
    with pytest.raises(TeacherError):
        load_teacher(teacher_copy)


def test_missing_path_and_file_path_are_refused(tmp_path):
    with pytest.raises(TeacherError, match="does not exist"):
        read_teacher_config(tmp_path / "nowhere")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(TeacherError, match="not a directory"):
        read_teacher_config(tmp_path / "file.bin")


# --------------------------------------------------------------------------- loading


def test_load_safetensors_teacher(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir)
    assert not teacher.model.training
    assert teacher.head is teacher.model.classifier
    assert teacher.info == read_teacher_config(tiny_teacher_dir)


def test_load_pickle_teacher_matches_safetensors(tiny_teacher_dir, tmp_path):
    legacy = make_tiny_teacher(tmp_path / "legacy", safetensors=False)  # same seed, same weights
    info = read_teacher_config(legacy)
    assert info.weights_file == "pytorch_model.bin" and info.parameters is None
    a, b = load_teacher(tiny_teacher_dir), load_teacher(legacy)
    enc = a.tokenizer(["good movie", "the plot was awful and dull"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.allclose(a.model(**enc).logits, b.model(**enc).logits)


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch_zip", "raw_pickle"])
def test_pickle_that_runs_code_is_refused_and_not_run(teacher_copy, tmp_path, writer):
    marker = tmp_path / "MARKER"
    (teacher_copy / "model.safetensors").unlink()
    payload = {"bert.embeddings.word_embeddings.weight": _RunsCode(marker)}
    if writer == "torch_zip":
        torch.save(payload, teacher_copy / "pytorch_model.bin")
    else:
        with (teacher_copy / "pytorch_model.bin").open("wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    assert read_teacher_config(teacher_copy).weights_file == "pytorch_model.bin"
    with pytest.raises(TeacherError, match="cannot be loaded safely"):
        load_teacher(teacher_copy)
    assert not marker.exists()


def test_pickle_payload_is_really_live(tmp_path):
    """Guards the test above: the same payload does run code when unpickled unsafely."""
    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.exists()


def test_weights_missing_the_head_are_refused(tiny_teacher_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(tiny_teacher_dir, tmp_path / "headless"))
    state = {k: v for k, v in load_file(copy / "model.safetensors").items() if not k.startswith("classifier.")}
    save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TeacherError, match="lack 2 tensors"):
        load_teacher(copy)


# --------------------------------------------------------------------------- generic head hook


def _family_config(family: str, vocab_size: int):
    import transformers as tf

    common = {"vocab_size": vocab_size, "num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"},
              "label2id": {"a": 0, "b": 1, "c": 2}}
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 64}
    if family == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64, **common)
    if family == "roberta":
        return tf.RobertaConfig(pad_token_id=0, **small, **common)
    if family == "albert":
        return tf.AlbertConfig(embedding_size=16, pad_token_id=0, **small, **common)
    if family == "mpnet":
        return tf.MPNetConfig(pad_token_id=0, **small, **common)
    if family == "deberta-v2":
        return tf.DebertaV2Config(pooler_hidden_size=32, pad_token_id=0, **small, **common)
    raise AssertionError(family)


@pytest.mark.parametrize(
    ("family", "head_name"),
    [
        ("distilbert", "classifier"),
        ("roberta", "classifier.out_proj"),
        ("albert", "classifier"),
        ("mpnet", "classifier.out_proj"),
        ("deberta-v2", "classifier"),
    ],
)
def test_generic_head_reproduces_logits(tiny_teacher_dir, tmp_path, family, head_name):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(_family_config(family, len(tokenizer)))
    out = tmp_path / family
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

    teacher = load_teacher(out)
    names = {module: name for name, module in teacher.model.named_modules()}
    assert names[teacher.head] == head_name
    captured = []
    hook = teacher.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    enc = teacher.tokenizer(["good movie", "the plot was awful and dull indeed"], padding=True, return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        logits = teacher.model(**enc).logits
        hook.remove()
        assert captured[-1].shape == (2, teacher.head.in_features)
        assert torch.allclose(teacher.head(captured[-1]), logits, atol=1e-6)


def test_device_auto_and_unknown_device(tiny_teacher_dir):
    teacher = load_teacher(tiny_teacher_dir, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(teacher.model.parameters()).device.type == expected
    with pytest.raises(TeacherError, match="unknown device"):
        load_teacher(tiny_teacher_dir, device="tpu-please")


def test_safetensors_win_over_a_pickle_next_to_them(teacher_copy, tmp_path):
    marker = tmp_path / "MARKER"
    torch.save({"x": _RunsCode(marker)}, teacher_copy / "pytorch_model.bin")
    assert read_teacher_config(teacher_copy).weights_file == "model.safetensors"
    load_teacher(teacher_copy)
    assert not marker.exists()
