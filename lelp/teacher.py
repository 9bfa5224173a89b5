"""Check and load a teacher: a Hugging Face sequence classifier that runs no foreign code.

``read_teacher_config`` answers "is this directory a usable teacher, and what is it?" from
``config.json`` and the safetensors headers alone, so the service can validate an upload
without importing torch. ``load_teacher`` then builds the model with the two guarantees the
product promises: no ``trust_remote_code`` and no pickle that can execute code (safetensors,
or ``torch.load(weights_only=True)`` which we call ourselves so the guarantee does not depend
on the installed transformers version).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lelp.errors import TeacherError

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps import-time torch-free
    import torch

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
# Files that carry a vocabulary: a tokenizer cannot be built without one of them.
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "spm.model")
# Files that change how text is tokenized, hence part of the teacher's identity.
TOKENIZER_FILES = (*VOCAB_FILES, "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class TeacherInfo:
    """What the service shows and the pipeline needs, read without loading the weights."""

    architecture: str
    model_type: str
    num_labels: int
    labels: list[str]
    hidden_size: int
    parameters: int | None  # None for pickle weights: counting them would mean unpickling
    weights_file: str  # model.safetensors | model.safetensors.index.json | pytorch_model.bin
    sha256: str


@dataclass
class Teacher:
    """A loaded teacher in eval mode; ``head`` is the final Linear whose input is the embedding."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    info: TeacherInfo
    head: torch.nn.Linear


# --------------------------------------------------------------------------- config checks


def _directory(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise TeacherError(f"teacher directory {str(p)!r} does not exist: give the path of a saved Hugging Face model")
    if not p.is_dir():
        raise TeacherError(f"teacher path {str(p)!r} is not a directory: unpack the model archive first")
    return p


def read_model_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` as a dict, refusing models that would need their own Python code."""
    root = _directory(path)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise TeacherError(f"no config.json in {str(root)!r}: save the model with save_pretrained()")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TeacherError(f"config.json in {str(root)!r} is not valid JSON ({exc}): re-save the model") from exc
    if not isinstance(config, dict):
        raise TeacherError(f"config.json in {str(root)!r} is not a JSON object: re-save the model")
    if config.get("auto_map"):
        raise TeacherError(
            "config.json has 'auto_map' (the model needs its own Python code), which is never run: "
            "use a model class built into transformers"
        )
    return config


def find_weights(root: Path) -> str:
    """The weights file name, safetensors first (they cannot run code)."""
    for name in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN):
        if (root / name).is_file():
            return name
    raise TeacherError(
        f"no weights in {str(root)!r}: expected {SAFETENSORS}, {SAFETENSORS_INDEX} with its shards, or {PYTORCH_BIN}"
    )


def _safetensors_parameters(file: Path) -> int:
    """Count parameters from the safetensors header: 8-byte little-endian length, then JSON."""
    try:
        with file.open("rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise ValueError("file shorter than its header")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(_MAX_HEADER_BYTES, file.stat().st_size - 8):
                raise ValueError("header length out of range")
            header = json.loads(fh.read(header_len))
        total = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= int(dim)
            total += count
        return total
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TeacherError(f"{file.name} is not a valid safetensors file ({exc}): re-save the model") from exc


def _shard_files(root: Path) -> list[str]:
    try:
        index = json.loads((root / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
        shards = sorted(set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TeacherError(f"{SAFETENSORS_INDEX} is not a valid shard index ({exc}): re-save the model") from exc
    for shard in shards:
        shard_path = root / shard
        if Path(shard).name != shard or not shard_path.is_file():
            raise TeacherError(f"shard {shard!r} listed in {SAFETENSORS_INDEX} is missing: copy every shard")
    return shards


def weight_files(root: Path, weights_file: str) -> list[str]:
    """Every file that holds weights (the index plus its shards for sharded checkpoints)."""
    if weights_file == SAFETENSORS_INDEX:
        return [SAFETENSORS_INDEX, *_shard_files(root)]
    return [weights_file]


def count_parameters(root: Path, weights_file: str) -> int | None:
    if weights_file == SAFETENSORS:
        return _safetensors_parameters(root / SAFETENSORS)
    if weights_file == SAFETENSORS_INDEX:
        return sum(_safetensors_parameters(root / shard) for shard in _shard_files(root))
    return None


def _labels(config: dict[str, Any]) -> list[str]:
    id2label = config.get("id2label")
    if id2label:
        try:
            by_id = {int(k): str(v) for k, v in id2label.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise TeacherError("config.json id2label must map integer ids to label names: fix the config") from exc
        if sorted(by_id) != list(range(len(by_id))):
            raise TeacherError("config.json id2label ids must be 0..C-1 without gaps: fix the config")
        return [by_id[i] for i in range(len(by_id))]
    num_labels = config.get("num_labels", 2)  # transformers' own default when neither is saved
    if not isinstance(num_labels, int):
        raise TeacherError("config.json num_labels must be an integer: fix the config")
    return [f"LABEL_{i}" for i in range(num_labels)]


def config_hidden_size(config: dict[str, Any]) -> int:
    """The encoder width, under whichever name the model family uses."""
    hidden = config.get("hidden_size", config.get("dim", config.get("d_model")))
    if not isinstance(hidden, int):
        raise TeacherError("config.json has no integer hidden_size (or dim / d_model): re-save the model")
    return hidden


def directory_sha256(root: str | Path, files: list[str] | None = None) -> str:
    """Hash of a model directory's files (names and full contents, sorted by name).

    Streams 1 MiB blocks so multi-GB weights never sit in memory. Without ``files`` it hashes
    config.json, the weights and the tokenizer files that exist.
    """
    root = Path(root)
    if files is None:
        weights = find_weights(root)
        files = ["config.json", *weight_files(root, weights), *(f for f in TOKENIZER_FILES if (root / f).is_file())]
    digest = hashlib.sha256()
    for name in sorted(set(files)):
        digest.update(name.encode("utf-8") + b"\0")
        with (root / name).open("rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def read_teacher_config(path: str | Path) -> TeacherInfo:
    """Validate a teacher directory and describe it, without importing torch or transformers."""
    root = _directory(path)
    config = read_model_config(root)
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not architectures or not str(architectures[0]).endswith(
        "ForSequenceClassification"
    ):
        raise TeacherError(
            f"the teacher must be a sequence classifier, but config.json architectures is {architectures!r}: "
            "fine-tune it with AutoModelForSequenceClassification and save it"
        )
    labels = _labels(config)
    if len(labels) < 2:
        raise TeacherError(f"the teacher has {len(labels)} label(s); a classifier needs at least 2: fix id2label")
    weights = find_weights(root)
    parameters = count_parameters(root, weights)
    if not any((root / f).is_file() for f in VOCAB_FILES):
        raise TeacherError(
            f"no tokenizer files in {str(root)!r} (expected one of {', '.join(VOCAB_FILES)}): "
            "save the tokenizer next to the model"
        )
    hidden = config_hidden_size(config)
    return TeacherInfo(
        architecture=str(architectures[0]),
        model_type=str(config.get("model_type", "")),
        num_labels=len(labels),
        labels=labels,
        hidden_size=hidden,
        parameters=parameters,
        weights_file=weights,
        sha256=directory_sha256(root),
    )


# --------------------------------------------------------------------------- loading


def safe_from_pretrained(auto_class: Any, root: Path, weights_file: str) -> tuple[Any, list[str]]:
    """``auto_class.from_pretrained`` with local files only, no remote code and no unsafe pickle.

    Pickle weights are read by our own ``torch.load(weights_only=True)`` and handed over as a
    state dict, so the guarantee holds whatever transformers would do with a ``.bin``.
    """
    import torch
    from transformers import AutoConfig

    common = {"trust_remote_code": False, "local_files_only": True}
    try:
        config = AutoConfig.from_pretrained(root, **common)
        if weights_file == PYTORCH_BIN:
            try:
                state_dict = torch.load(root / PYTORCH_BIN, map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...: all mean "refused"
                raise TeacherError(
                    f"{PYTORCH_BIN} cannot be loaded safely (it is not a plain tensor checkpoint: {_first_line(exc)}); "
                    "convert it to safetensors"
                ) from exc
            if not isinstance(state_dict, dict):
                raise TeacherError(f"{PYTORCH_BIN} does not hold a state dict: save model.state_dict() or safetensors")
            with torch.device("meta"):  # only to learn the concrete class the Auto class picks
                model_class = type(auto_class.from_config(config, trust_remote_code=False))
            model, loading = model_class.from_pretrained(
                None, config=config, state_dict=state_dict, output_loading_info=True, **common
            )
        else:
            model, loading = auto_class.from_pretrained(
                root, config=config, use_safetensors=True, output_loading_info=True, **common
            )
    except TeacherError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise TeacherError(f"the model in {str(root)!r} cannot be loaded: {_first_line(exc)}") from exc
    missing = sorted(loading.get("missing_keys") or [])
    mismatched = loading.get("mismatched_keys") or []
    if mismatched:
        raise TeacherError(f"weights do not match config.json (shape mismatch in {len(mismatched)} tensors): re-save")
    return model, missing


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def find_head(model: torch.nn.Module, num_labels: int) -> torch.nn.Linear:
    """The last ``nn.Linear`` with ``num_labels`` outputs, in registration order.

    Works for BERT, RoBERTa, DistilBERT, ALBERT, MPNet and DeBERTa alike without naming them:
    each ends its classifier with such a layer, and its input is the teacher embedding.
    """
    import torch

    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not heads:
        raise TeacherError(f"no final nn.Linear with {num_labels} outputs found: the teacher's head is not linear")
    return heads[-1]


def load_tokenizer(root: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TeacherError(f"the tokenizer in {str(root)!r} cannot be loaded: {_first_line(exc)}") from exc


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` means the GPU when there is one; anything else goes to ``torch.device``."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise TeacherError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> Teacher:
    """Load a validated teacher in eval mode on ``device``, with its classification head found."""
    from transformers import AutoModelForSequenceClassification

    info = read_teacher_config(path)
    root = Path(path)
    model, missing = safe_from_pretrained(AutoModelForSequenceClassification, root, info.weights_file)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise TeacherError(
            f"the teacher's weights lack {len(missing)} tensors ({shown}): it is not a trained classifier; "
            "fine-tune it and save it with save_pretrained()"
        )
    model.eval().to(resolve_device(device))
    head = find_head(model, info.num_labels)
    return Teacher(model=model, tokenizer=load_tokenizer(root), info=info, head=head)
