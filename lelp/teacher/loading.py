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
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lelp.errors import TeacherError
from lelp.uploads import jsonsafe
from lelp.uploads.model_limits import ModelLimits, ModelSize, check_model_config, config_num_labels

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
_MAX_DIM = 1 << 40  # one tensor dimension; the byte range check bounds the product anyway
_MAX_LABEL_CHARS = 200
# Bytes per element of each safetensors dtype (the spec's list).
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
                      "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8, "I64": 8, "U64": 8}
# A config that describes this many times the parameters its weights hold is not the model's config:
# loading it would allocate the config's size before failing on the shapes.
_CONFIG_WEIGHTS_RATIO = 4
_CONFIG_WEIGHTS_SLACK = 10_000_000


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


def _remote_code_key(value: Any) -> bool:
    """True when ``auto_map`` appears at any depth (the parsed value is depth-bounded)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("auto_map"):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _load_json(file: Path, shown: str) -> Any:
    try:
        return jsonsafe.load_file(file)
    except jsonsafe.JSONLimitError as exc:
        raise TeacherError(f"{shown} is refused: {exc}: re-save the model", param=f"file:{shown}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TeacherError(f"{shown} is not valid JSON ({exc}): re-save the model", param=f"file:{shown}") from exc


def check_json_files(root: Path) -> None:
    """Every ``*.json`` of the model directory: bounded size and depth, and no remote code anywhere.

    transformers reads ``auto_map`` from ``config.json`` and from ``tokenizer_config.json``,
    and nested configs (``text_config``) carry their own; we refuse the key wherever it is.
    """
    for file in sorted(root.rglob("*.json")):
        if not file.is_file():
            continue
        shown = file.relative_to(root).as_posix()
        if _remote_code_key(_load_json(file, shown)):
            raise TeacherError(
                f"{shown} has 'auto_map' (the model needs its own Python code), which is never run: "
                "use a model class built into transformers", param=f"file:{shown}")


def read_model_config(path: str | Path, limits: ModelLimits | None = None, *,
                      classifier: bool = False) -> dict[str, Any]:
    """``config.json`` as a dict, refusing remote code and sizes over ``limits`` (default: from the env).

    Every path that reads a teacher or base model comes here first, so no model is ever
    allocated from a config that was not bounded (``lelp.uploads.model_limits``).
    """
    root = _directory(path)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise TeacherError(f"no config.json in {str(root)!r}: save the model with save_pretrained()")
    config = _load_json(config_path, "config.json")
    if not isinstance(config, dict):
        raise TeacherError(f"config.json in {str(root)!r} is not a JSON object: re-save the model")
    check_json_files(root)
    check_model_config(config, limits, classifier=classifier)
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
    """Count parameters from a safetensors header, checking it as the safetensors library would.

    The file is 8 bytes of little-endian header length, a JSON header, then the data. Each
    tensor's ``data_offsets`` must lie inside the data, tensors must tile it without gaps or
    overlaps, and ``prod(shape) * dtype size`` must equal the byte range (Python integers:
    no overflow, and the range bounds the count by the file size).
    """
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) != 8:
                raise ValueError("file shorter than its header")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(_MAX_HEADER_BYTES, size - 8):
                raise ValueError("header length out of range")
            header = jsonsafe.loads(fh.read(header_len))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        data_len = size - 8 - header_len
        spans: list[tuple[int, int, str]] = []
        total = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
            if dtype not in SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {name!r:.80} has unknown dtype {dtype!r:.20}")
            if not isinstance(shape, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= _MAX_DIM for d in shape):
                raise ValueError(f"tensor {name!r:.80} has an invalid shape")
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(
                    isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
                raise ValueError(f"tensor {name!r:.80} has invalid data_offsets")
            begin, end = offsets
            if not 0 <= begin <= end <= data_len:
                raise ValueError(f"tensor {name!r:.80} points outside the file ({begin}..{end} of {data_len} bytes)")
            count = 1
            for dim in shape:
                count *= dim
            if count * SAFETENSORS_DTYPES[dtype] != end - begin:
                raise ValueError(f"tensor {name!r:.80}: shape {shape} of {dtype} does not fill {end - begin} bytes")
            spans.append((begin, end, name))
            total += count
        position = 0
        for begin, end, name in sorted(spans):
            if begin != position:
                raise ValueError(f"tensor {name!r:.80} overlaps another or leaves a gap at byte {position}")
            position = end
        if position != data_len:
            raise ValueError(f"the tensors cover {position} of the {data_len} data bytes")
        return total
    except jsonsafe.JSONLimitError as exc:
        raise TeacherError(f"{file.name} is not a valid safetensors file ({exc}): re-save the model",
                           param=f"file:{file.name}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TeacherError(f"{file.name} is not a valid safetensors file ({exc}): re-save the model",
                           param=f"file:{file.name}") from exc


def _shard_files(root: Path) -> list[str]:
    try:
        index = jsonsafe.load_file(root / SAFETENSORS_INDEX)
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


def count_stored_parameters(root: Path, weights_file: str) -> int | None:
    """Parameters in a model directory's safetensors headers, without loading it (None for a pickle)."""
    if weights_file == SAFETENSORS:
        return _safetensors_parameters(root / SAFETENSORS)
    if weights_file == SAFETENSORS_INDEX:
        return sum(_safetensors_parameters(root / shard) for shard in _shard_files(root))
    return None


def _scalar_label(value: Any) -> Any:
    """Numbers as names (``{"0": 0}``) read as their text; lists and objects stay refused."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _labels(config: dict[str, Any], limits: ModelLimits | None = None) -> list[str]:
    """Label names by id: bounded in number and length, unique after case-folding."""
    count = config_num_labels(config, limits or ModelLimits.from_env())
    id2label = config.get("id2label")
    if id2label:
        try:
            by_id = {int(k): v if isinstance(v, str) else _scalar_label(v) for k, v in id2label.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise TeacherError("config.json id2label must map integer ids to label names: fix the config",
                               param="config.json:id2label") from exc
        if sorted(by_id) != list(range(len(by_id))):
            raise TeacherError("config.json id2label ids must be 0..C-1 without gaps: fix the config",
                               param="config.json:id2label")
        labels = [by_id[i] for i in range(len(by_id))]
    else:
        labels = [f"LABEL_{i}" for i in range(count)]
    seen: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str) or not label.strip() or len(label) > _MAX_LABEL_CHARS:
            raise TeacherError(f"config.json id2label names must be non-empty strings of at most "
                               f"{_MAX_LABEL_CHARS} characters, got {label!r:.60}", param="config.json:id2label")
        folded = label.casefold()
        if folded in seen:
            raise TeacherError(f"config.json id2label has the label {label!r} twice (as {seen[folded]!r}; labels "
                               "are matched regardless of case): give each class its own name",
                               param="config.json:id2label")
        seen[folded] = label
    return labels


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


def read_teacher_config(path: str | Path, limits: ModelLimits | None = None) -> TeacherInfo:
    """Validate a teacher directory and describe it, without importing torch or transformers."""
    root = _directory(path)
    limits = limits or ModelLimits.from_env()
    config = read_model_config(root, limits, classifier=True)
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not architectures or not str(architectures[0]).endswith(
        "ForSequenceClassification"
    ):
        raise TeacherError(
            f"the teacher must be a sequence classifier, but config.json architectures is {architectures!r:.200}: "
            "fine-tune it with AutoModelForSequenceClassification and save it"
        )
    labels = _labels(config, limits)
    if len(labels) < 2:
        raise TeacherError(f"the teacher has {len(labels)} label(s); a classifier needs at least 2: fix id2label",
                           param="config.json:id2label")
    weights = find_weights(root)
    parameters = count_stored_parameters(root, weights)
    if parameters is not None:
        _check_config_matches_weights(teacher_size(config, len(labels)), parameters)
    if not any((root / f).is_file() for f in VOCAB_FILES):
        raise TeacherError(
            f"no tokenizer files in {str(root)!r} (expected one of {', '.join(VOCAB_FILES)}): "
            "save the tokenizer next to the model"
        )
    hidden = config_hidden_size(config)
    return TeacherInfo(
        architecture=str(architectures[0])[:200],
        model_type=str(config.get("model_type", ""))[:100],
        num_labels=len(labels),
        labels=labels,
        hidden_size=hidden,
        parameters=parameters,
        weights_file=weights,
        sha256=directory_sha256(root),
    )


def teacher_size(config: dict[str, Any], num_labels: int) -> ModelSize:
    """The estimate ``check_model_config`` bounded, for the worker's free-memory check."""
    from lelp.uploads.model_limits import estimate_model_size

    return estimate_model_size(config, num_labels=num_labels)


def _check_config_matches_weights(size: ModelSize, parameters: int) -> None:
    if size.parameters > _CONFIG_WEIGHTS_RATIO * parameters + _CONFIG_WEIGHTS_SLACK:
        raise TeacherError(
            f"config.json describes about {size.parameters:,} parameters but the weights hold {parameters:,}: "
            "the config is not this model's (hidden_size, num_hidden_layers, vocab_size); re-save the model",
            param="config.json:hidden_size")


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


def _teacher_device(device: str | torch.device | None) -> torch.device:
    """``lelp.devices.resolve.resolve_device``, its refusal reported as a ``TeacherError`` (what loading raises)."""
    from lelp.devices.resolve import resolve_device
    from lelp.errors import ConfigError

    try:
        return resolve_device(device)
    except ConfigError as exc:
        raise TeacherError(exc.message) from exc


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> Teacher:
    """Load a validated teacher in eval mode on ``device``, with its classification head found."""
    from transformers import AutoModelForSequenceClassification

    from lelp.uploads.model_limits import check_available_memory

    info = read_teacher_config(path)
    root = Path(path)
    # Before anything is allocated: a model that cannot fit fails in a second with a clear code,
    # instead of growing until the OOM killer ends the worker (and the redelivery does it again).
    check_available_memory(teacher_size(read_model_config(root, classifier=True), info.num_labels))
    model, missing = safe_from_pretrained(AutoModelForSequenceClassification, root, info.weights_file)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise TeacherError(
            f"the teacher's weights lack {len(missing)} tensors ({shown}): it is not a trained classifier; "
            "fine-tune it and save it with save_pretrained()"
        )
    model.eval().to(_teacher_device(device))
    head = find_head(model, info.num_labels)
    return Teacher(model=model, tokenizer=load_tokenizer(root), info=info, head=head)
