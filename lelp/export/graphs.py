"""One small function per student kind: the torch module that ONNX export traces.

Each graph takes what the student's own featuriser produces (a tokenizer's ids, or the
n-gram student's hashed ids, offsets and weights) and returns the C class probabilities
with the sub-class sum folded in, so a user of the ONNX file needs nothing of ours.
``GRAPHS`` maps a student kind to its function; a new kind (e.g. ``static``) is one
more entry. Nothing here imports onnx: these are plain ``nn.Module`` wrappers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from lelp.errors import ConfigError


def class_probabilities(logits: torch.Tensor, classes: int, subclasses: int) -> torch.Tensor:
    """softmax over the S*C outputs, then the sum over each class's S sub-classes: (n, C)."""
    probs = torch.softmax(logits.float(), dim=-1)
    if subclasses == 1:
        return probs
    return probs.unflatten(-1, (classes, subclasses)).sum(-1)


@dataclass
class Graph:
    """What ``torch.onnx.export`` needs, plus how a user must featurise text for it."""

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    #: written to ``lelp_onnx.json``: ``{"type": "tokenizer", ...}`` or ``{"type": "hashing", ...}``
    preprocessing: dict
    #: a Hugging Face tokenizer to save beside the graph (tokenizer kinds only)
    tokenizer: object | None = None
    notes: list[str] = field(default_factory=list)


class _Probabilities(nn.Module):
    """Positional inputs (in ``names`` order) -> keyword call of ``forward_fn`` -> class probabilities."""

    def __init__(self, body: nn.Module, names: list[str], logits_fn: Callable, classes: int, subclasses: int):
        super().__init__()
        self.body, self.names, self.logits_fn = body, names, logits_fn
        self.classes, self.subclasses = classes, subclasses
        self.temperature = 1.0  # the artifact's calibration (graph_for sets it): in the graph itself
        # a new module is in training mode, and the exporter restores that mode recursively after
        # tracing: without this the wrapped student would keep dropout on afterwards
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        probs = class_probabilities(self.logits_fn(self.body, dict(zip(self.names, inputs, strict=True))),
                                    self.classes, self.subclasses)
        if self.temperature != 1.0:  # calibrated like lelp.cascade.apply_temperature
            probs = torch.softmax(torch.log(probs.clamp_min(1e-12)) / self.temperature, dim=-1)
        return probs


def _token_example(tokenizer, max_length: int) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Two rows of different lengths, padded: the traced example of a tokenizer graph."""
    enc = tokenizer(["an example sentence to trace", "another"], truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    return names, {n: enc[n] for n in names}


def _token_axes(names: list[str]) -> dict[str, dict[int, str]]:
    return {**{n: {0: "batch", 1: "sequence"} for n in names}, "probabilities": {0: "batch"}}


def transformer_graph(predictor, manifest: dict) -> Graph:
    """The Hugging Face student itself: ids -> S*C logits -> class probabilities."""
    names, example = _token_example(predictor.tokenizer, predictor.max_length)

    def logits(model, batch):
        return model(**batch).logits

    module = _Probabilities(predictor.model.eval(), names, logits, len(manifest["labels"]),
                            int(manifest["subclasses"]))
    return Graph(module, tuple(example.values()), names, _token_axes(names),
                 {"type": "tokenizer", "max_length": predictor.max_length}, tokenizer=predictor.tokenizer)


class _EncoderMLP(nn.Module):
    def __init__(self, encoder: nn.Module, student: nn.Module):
        super().__init__()
        self.encoder, self.student = encoder, student


def encoder_mlp_graph(predictor, manifest: dict) -> Graph:
    """Frozen encoder, mean pooling over the attention mask, then the student's MLP."""
    from lelp.teacher.features import mean_pool

    encoder = predictor.encoder
    names, example = _token_example(encoder.tokenizer, encoder.max_length)

    def logits(body, batch):
        pooled = mean_pool(body.encoder(**batch).last_hidden_state.float(), batch["attention_mask"])
        return body.student({"features": pooled})[0]

    module = _Probabilities(_EncoderMLP(encoder.model.eval(), predictor.student.eval()), names, logits,
                            len(manifest["labels"]), int(manifest["subclasses"]))
    return Graph(module, tuple(example.values()), names, _token_axes(names),
                 {"type": "tokenizer", "max_length": encoder.max_length}, tokenizer=encoder.tokenizer)


def ngram_graph(predictor, manifest: dict) -> Graph:
    """Hashed n-grams as (ids, offsets, weights), the layout of ``torch.nn.EmbeddingBag``."""
    from dataclasses import asdict

    from lelp.students.ngram import PAIR_SEPARATOR

    student = predictor.student.eval()
    names = ["ids", "offsets", "weights"]

    def logits(model, batch):
        return model(batch)[0]

    module = _Probabilities(student, names, logits, len(manifest["labels"]), int(manifest["subclasses"]))
    example = (torch.tensor([3, 1, 4, 1, 5]), torch.tensor([0, 2]), torch.tensor([0.2, 0.8, 0.3, 0.3, 0.4]))
    preprocessing = {
        "type": "hashing", **asdict(student.hashing), "pair_separator": PAIR_SEPARATOR,
        "how": "scikit-learn HashingVectorizer(n_features, ngram_range=(ngram_min, ngram_max), lowercase, "
               "token_pattern, alternate_sign=False, norm='l1'); per row: ids = the CSR column indices, "
               "weights = the CSR values, offsets = indptr[:-1] (int64 ids and offsets, float32 weights)",
    }
    return Graph(module, example, names, {"ids": {0: "ngrams"}, "offsets": {0: "batch"},
                                          "weights": {0: "ngrams"}, "probabilities": {0: "batch"}},
                 preprocessing)


def static_graph(predictor, manifest: dict) -> Graph:
    """Token ids (no special tokens) as (ids, offsets): the table's mean, then the head."""
    student = predictor.student.eval()
    names = ["ids", "offsets"]

    def logits(model, batch):
        return model(batch)[0]

    module = _Probabilities(student, names, logits, len(manifest["labels"]), int(manifest["subclasses"]))
    example = (torch.tensor([3, 1, 4, 1, 5]), torch.tensor([0, 2]))
    preprocessing = {"type": "token_ids", "max_length": predictor.max_length,
                     "how": "tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length); "
                            "ids = every row's input_ids concatenated, offsets = where each row starts (int64)"}
    return Graph(module, example, names, {"ids": {0: "tokens"}, "offsets": {0: "batch"},
                                          "probabilities": {0: "batch"}}, preprocessing,
                 tokenizer=predictor.tokenizer)


def cnn_graph(predictor, manifest: dict) -> Graph:
    """Token ids (no special tokens), padded, with their mask: the table, the convolution, the head."""
    student = predictor.student.eval()
    student.unfold()  # the graph keeps the convolution (the folded taps would add V x F x width floats)
    names = ["input_ids", "attention_mask"]

    def logits(model, batch):
        return model({"ids": batch["input_ids"], "mask": batch["attention_mask"]})[0]

    module = _Probabilities(student, names, logits, len(manifest["labels"]), int(manifest["subclasses"]))
    example = (torch.tensor([[3, 1, 4, 1, 5], [9, 2, 0, 0, 0]]), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]))
    preprocessing = {"type": "padded_token_ids", "max_length": predictor.max_length,
                     "how": "tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length); "
                            "input_ids = the rows zero-padded to the longest (at least one column), "
                            "attention_mask = 1 on real tokens (both int64)"}
    return Graph(module, example, names, _token_axes(names), preprocessing, tokenizer=predictor.tokenizer)


#: student kind -> its graph function
GRAPHS: dict[str, Callable[[object, dict], Graph]] = {
    "static": static_graph,
    "cnn": cnn_graph,
    "ngram": ngram_graph,
    "encoder_mlp": encoder_mlp_graph,
    "transformer": transformer_graph,
}


def graph_for(predictor, manifest: dict) -> Graph:
    kind = manifest.get("kind")
    if kind not in GRAPHS:
        raise ConfigError(f"ONNX export does not know the {kind!r} student; it knows {', '.join(GRAPHS)}",
                          param="format")
    graph = GRAPHS[kind](predictor, manifest)
    if isinstance(graph.module, _Probabilities):
        graph.module.temperature = float(manifest.get("temperature", 1.0))
    return graph
