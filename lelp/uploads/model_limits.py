"""How big a model's config says it is, decided from ``config.json`` alone, before any allocation.

transformers allocates every tensor that ``config.json`` describes before it reads a single
weight, so the config, not the weights file, decides how much memory a load takes: a
650-byte config with ``num_labels: 10_000_000`` or ``hidden_size: 8192`` x 48 layers is a
memory bomb whatever weights come with it. :func:`check_model_config` therefore bounds
every size field (positive integers in a sane range), estimates the parameter count and the
activation memory of one feature-extraction batch, and refuses a model over the configured
limits with a :class:`~lelp.errors.TeacherError` that names the field.

The estimate is exact for the BERT family (embeddings, ``num_hidden_layers`` blocks of
attention + feed-forward, the pooler or classification head); other encoder families
(RoBERTa, DistilBERT, ALBERT, MPNet, DeBERTa, ELECTRA) differ by their small
position-bias tables only. ``tests/lelp/test_model_limits.py`` compares it with the real
count of the shipped MiniLM and of the tiny test BERTs.

Limits come from ``LELP_MAX_MODEL_PARAMETERS``, ``LELP_MAX_MODEL_LABELS`` and
``LELP_MAX_MODEL_MEMORY_BYTES`` (the same names as the service's settings), so the CLI, the
API and the worker refuse the same models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lelp.errors import LELPError, TeacherError

GIB = 1024**3
#: Feature extraction batch (``extract_teacher_features``' default) and the longest sequence
#: the activation estimate assumes (the model's positions, capped at 512).
ESTIMATE_BATCH = 64
ESTIMATE_MAX_SEQUENCE = 512
FLOAT_BYTES = 4

# (names the families use, lowest, highest). Real models sit far inside these ranges.
SIZE_FIELDS: dict[str, tuple[tuple[str, ...], int, int]] = {
    "hidden_size": (("hidden_size", "dim", "d_model"), 1, 65_536),
    "num_hidden_layers": (("num_hidden_layers", "n_layers", "num_layers"), 1, 1_024),
    "num_attention_heads": (("num_attention_heads", "n_heads"), 1, 1_024),
    "intermediate_size": (("intermediate_size", "hidden_dim", "ffn_dim"), 1, 1_048_576),
    "vocab_size": (("vocab_size",), 1, 10_000_000),
    "max_position_embeddings": (("max_position_embeddings",), 0, 1_048_576),
    "type_vocab_size": (("type_vocab_size",), 0, 1_024),
    "embedding_size": (("embedding_size",), 1, 65_536),
    "num_hidden_groups": (("num_hidden_groups",), 1, 1_024),
}


class ResourceError(LELPError):
    """The machine has too little free memory for the model right now."""

    code = "insufficient_memory"


@dataclass(frozen=True)
class ModelLimits:
    """Bounds on what a model's config may ask for; defaults fit a 2-core, 8 GB machine's teacher."""

    max_parameters: int = 2_000_000_000
    max_labels: int = 1_000
    max_memory_bytes: int = 32 * GIB

    @classmethod
    def from_env(cls) -> ModelLimits:
        """The limits named by ``LELP_MAX_MODEL_*`` (unset: the defaults)."""
        values: dict[str, int] = {}
        for field, env in (("max_parameters", "LELP_MAX_MODEL_PARAMETERS"), ("max_labels", "LELP_MAX_MODEL_LABELS"),
                           ("max_memory_bytes", "LELP_MAX_MODEL_MEMORY_BYTES")):
            raw = os.environ.get(env, "").strip().replace("_", "")
            if raw:
                try:
                    values[field] = int(raw)
                except ValueError:
                    raise TeacherError(f"{env} must be an integer, got {raw!r}") from None
        return cls(**values)


@dataclass(frozen=True)
class ModelSize:
    """What loading the model will cost, estimated from its config."""

    parameters: int
    activation_bytes: int  # peak of one forward of ESTIMATE_BATCH x sequence tokens

    @property
    def weight_bytes(self) -> int:
        return self.parameters * FLOAT_BYTES

    @property
    def load_bytes(self) -> int:
        """Weights (allocated, then filled from the file) plus one batch's activations."""
        return self.weight_bytes + self.activation_bytes


def _field(config: dict[str, Any], name: str, default: int | None = None) -> int | None:
    names, low, high = SIZE_FIELDS[name]
    for key in names:
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise TeacherError(f"config.json {key} must be an integer, got {value!r:.40}: fix the config",
                                   param=f"config.json:{key}")
            if not low <= value <= high:
                raise TeacherError(f"config.json {key} is {value:,}; it must be between {low:,} and {high:,}",
                                   param=f"config.json:{key}")
            return value
    return default


def config_num_labels(config: dict[str, Any], limits: ModelLimits) -> int:
    """The label count (``id2label`` first, then ``num_labels``; 2 when neither is saved), bounded."""
    id2label = config.get("id2label")
    if id2label:
        if not isinstance(id2label, dict):
            raise TeacherError("config.json id2label must map integer ids to label names: fix the config",
                               param="config.json:id2label")
        count, key = len(id2label), "id2label"
    else:
        count, key = config.get("num_labels", 2), "num_labels"
        if isinstance(count, bool) or not isinstance(count, int):
            raise TeacherError(f"config.json num_labels must be an integer, got {count!r:.40}: fix the config",
                               param="config.json:num_labels")
    if not 1 <= count <= limits.max_labels:
        raise TeacherError(f"config.json {key} gives {count:,} labels; this server takes 1 to {limits.max_labels:,} "
                           "(LELP_MAX_MODEL_LABELS): a few-class classifier is expected",
                           param=f"config.json:{key}")
    return count


def estimate_model_size(config: dict[str, Any], *, num_labels: int | None) -> ModelSize:
    """Parameters and activation bytes of the encoder ``config`` describes (+ head for ``num_labels``)."""
    hidden = _field(config, "hidden_size")
    if hidden is None:
        raise TeacherError("config.json has no integer hidden_size (or dim / d_model): re-save the model",
                           param="config.json:hidden_size")
    layers = _field(config, "num_hidden_layers", 12) or 12
    heads = _field(config, "num_attention_heads", 12) or 12
    inner = _field(config, "intermediate_size", 4 * hidden) or 4 * hidden
    vocab = _field(config, "vocab_size", 30_522) or 30_522
    positions = _field(config, "max_position_embeddings", 512)
    types = _field(config, "type_vocab_size", 0)
    embed = _field(config, "embedding_size", hidden) or hidden
    groups = _field(config, "num_hidden_groups", None)
    positions = 512 if positions is None else positions
    types = types or 0
    # Embeddings: word + position + token type tables, then a LayerNorm; ALBERT/ELECTRA project
    # a narrower embedding up to the hidden size.
    parameters = (vocab + positions + types) * embed + 2 * embed
    if embed != hidden:
        parameters += embed * hidden + hidden
    # One block: Q, K, V, O (each H x H + bias), two LayerNorms, the feed-forward H -> I -> H.
    block = 4 * (hidden * hidden + hidden) + 2 * hidden * inner + inner + hidden + 4 * hidden
    shared = config.get("model_type") == "albert"  # ALBERT shares one block per group
    parameters += block * ((groups or 1) if shared else layers)
    # BERT's pooler, RoBERTa's head dense layer, DistilBERT's pre_classifier: H x H + bias.
    parameters += hidden * hidden + hidden
    if num_labels is not None:
        parameters += hidden * num_labels + num_labels
    sequence = min(positions or ESTIMATE_MAX_SEQUENCE, ESTIMATE_MAX_SEQUENCE)
    tokens = ESTIMATE_BATCH * sequence
    # Peak of one block without gradients: its input, Q/K/V, the attention scores, the FFN inner.
    activation = (tokens * (5 * hidden + inner) + ESTIMATE_BATCH * heads * sequence * sequence) * FLOAT_BYTES
    return ModelSize(parameters=parameters, activation_bytes=activation)


def check_model_config(config: dict[str, Any], limits: ModelLimits | None = None, *,
                       classifier: bool = True) -> ModelSize:
    """Refuse a config over ``limits`` (TeacherError naming the field); returns the size estimate."""
    limits = limits or ModelLimits.from_env()
    num_labels = config_num_labels(config, limits) if classifier else None
    size = estimate_model_size(config, num_labels=num_labels)
    if size.parameters > limits.max_parameters:
        raise TeacherError(
            f"config.json describes a model of about {size.parameters:,} parameters (hidden_size, "
            f"num_hidden_layers, intermediate_size, vocab_size); this server takes at most "
            f"{limits.max_parameters:,} (LELP_MAX_MODEL_PARAMETERS)", param="config.json:hidden_size")
    if size.load_bytes > limits.max_memory_bytes:
        raise TeacherError(
            f"config.json describes a model that needs about {size.load_bytes / GIB:.1f} GiB to load and run a "
            f"batch (max_position_embeddings, num_attention_heads, hidden_size); this server allows "
            f"{limits.max_memory_bytes / GIB:.1f} GiB (LELP_MAX_MODEL_MEMORY_BYTES)",
            param="config.json:max_position_embeddings")
    return size


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_available_memory(size: ModelSize, what: str = "the teacher") -> None:
    """Fail fast (``insufficient_memory``) instead of growing until the OOM killer ends the worker."""
    free = available_memory_bytes()
    if free is not None and size.load_bytes > free:
        raise ResourceError(
            f"{what} needs about {size.load_bytes / GIB:.2f} GiB to load and run a batch, but only "
            f"{free / GIB:.2f} GiB of memory is free on this worker: free memory or use a smaller model")
