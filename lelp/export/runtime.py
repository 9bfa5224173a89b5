"""Serve an exported student on onnxruntime: the same ``predict`` interface as the torch predictors.

A package directory (written by :func:`lelp.export.onnx.export_onnx`) holds ``model.onnx``,
``lelp_onnx.json`` (labels, inputs, how to featurise) and, for tokenizer kinds, the
tokenizer files. Featurisation is the student's own (the same tokenizer call, or the same
scikit-learn hashing), so the graph sees exactly the inputs the torch student saw.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from lelp.artifacts import Predictor
from lelp.cascade import apply_temperature
from lelp.errors import ArtifactError, ConfigError
from lelp.students.registry import STUDENT_KINDS

ONNX_MANIFEST = "lelp_onnx.json"
ONNX_FORMAT_VERSION = 1
EXTRA_HINT = "install the optional extra: pip install 'lelp-distill[onnx]'"


#: the student kinds ``lelp.export.graphs.GRAPHS`` exports: every kind (a test checks it), read
#: torch-free from the registry for the service
ONNX_KINDS = STUDENT_KINDS
RUNTIME_CHOICES = ("auto", "torch", "onnxruntime")
QUANTIZE_CHOICES = ("int8",)  # what an export may be quantized to (the library, its CLI and the API)


def variant_name(quantize: str | None) -> str:
    """``onnx-fp32`` or ``onnx-int8``: the key of an export in metrics and in the store (torch-free, for the API)."""
    return f"onnx-{quantize or 'fp32'}"


def onnxruntime_available() -> bool:
    """True when onnxruntime can be imported (checked without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def serving_runtime(kind: str, requested: str = "auto") -> str:
    """``onnxruntime`` for a kind that exports, when onnxruntime is installed and torch is not asked for."""
    if requested != "torch" and kind in ONNX_KINDS and onnxruntime_available():
        return "onnxruntime"
    return "torch"


def read_onnx_manifest(package_dir: str | Path) -> dict:
    file = Path(package_dir) / ONNX_MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{package_dir} is not an exported LELP ONNX package (no {ONNX_MANIFEST})",
                            param="model")
    manifest = json.loads(file.read_text())
    if manifest.get("format_version") != ONNX_FORMAT_VERSION:
        raise ArtifactError(f"{package_dir}: ONNX package format {manifest.get('format_version')!r}; this lelp "
                            f"reads {ONNX_FORMAT_VERSION}", param="model")
    return manifest


class TokenizerFeatures:
    """A Hugging Face tokenizer, called exactly as the torch predictors call it."""

    def __init__(self, package_dir: Path, spec: dict, input_names: list[str]):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(package_dir, local_files_only=True)
        self.max_length, self.input_names = int(spec["max_length"]), input_names

    def __call__(self, texts, text_pairs) -> dict[str, np.ndarray]:
        enc = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None, truncation=True,
                             max_length=self.max_length, padding=True, return_tensors="np")
        return {name: enc[name].astype(np.int64, copy=False) for name in self.input_names}


class HashingFeatures:
    """The n-gram student's hashing (scikit-learn, MurmurHash3) as EmbeddingBag inputs."""

    def __init__(self, _package_dir: Path, spec: dict, _input_names: list[str]):
        from lelp.students.hashing import FastHasher, HashingSpec, join_pairs  # torch-free

        self.join_pairs = join_pairs
        fields = {k: spec[k] for k in ("n_features", "ngram_min", "ngram_max", "lowercase", "token_pattern")}
        self.hasher = FastHasher(HashingSpec(**fields))

    def __call__(self, texts, text_pairs) -> dict[str, np.ndarray]:
        indptr, indices, data = self.hasher.transform(self.join_pairs(texts, text_pairs))
        return {"ids": indices.astype(np.int64), "offsets": indptr[:-1].astype(np.int64), "weights": data}


class TokenIdsFeatures:
    """The static student's featurisation: token ids without special tokens, as EmbeddingBag inputs."""

    def __init__(self, package_dir: Path, spec: dict, _input_names: list[str]):
        from transformers import PreTrainedTokenizerFast

        self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(package_dir / "tokenizer.json"))
        self.max_length = int(spec["max_length"])

    def __call__(self, texts, text_pairs) -> dict[str, np.ndarray]:
        rows = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                              add_special_tokens=False, truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        ids = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
        return {"ids": ids, "offsets": offsets}


class PaddedTokenIdsFeatures(TokenIdsFeatures):
    """The cnn student's featurisation: the same token ids as a zero-padded matrix, with its mask."""

    def __call__(self, texts, text_pairs) -> dict[str, np.ndarray]:
        rows = self.tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                              add_special_tokens=False, truncation=True, max_length=self.max_length)["input_ids"]
        width = max([1, *map(len, rows)])  # only empty texts: one padded column, as the torch student's batches
        ids, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return {"input_ids": ids, "attention_mask": mask}


FEATURISERS = {"tokenizer": TokenizerFeatures, "hashing": HashingFeatures, "token_ids": TokenIdsFeatures,
               "padded_token_ids": PaddedTokenIdsFeatures}


def session_options(threads: int | None):
    """One intra-op thread count for the session: ``threads``, else ``OMP_NUM_THREADS``, else onnxruntime's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    count = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    options.intra_op_num_threads = max(count, 0)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the n-gram Loop graph logs a harmless warning per session
    return options


class OnnxPredictor(Predictor):
    """An exported student on onnxruntime (CPU): featurise, run the graph, read class probabilities."""

    runtime = "onnxruntime"

    def __init__(self, package_dir: str | Path, *, model_file: str = "model.onnx", threads: int | None = None,
                 batch_size: int = 64):
        if not onnxruntime_available():
            raise ConfigError(f"serving on onnxruntime needs onnxruntime: {EXTRA_HINT}", param="runtime")
        import onnxruntime as ort

        root = Path(package_dir)
        self.manifest = read_onnx_manifest(root)
        self.labels = list(self.manifest["labels"])
        self.quantize = self.manifest.get("quantize")
        # packages written since issue 22 hold the calibration in the graph ("calibrated": true)
        self.temperature = 1.0 if self.manifest.get("calibrated") else float(self.manifest.get("temperature", 1.0))
        self.batch_size = batch_size
        self.session = ort.InferenceSession(str(root / model_file), session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        spec = self.manifest["preprocessing"]
        self.featurise = FEATURISERS[spec["type"]](root, spec, self.input_names)

    def predict_proba(self, texts, text_pairs=None) -> np.ndarray:
        chunks = []
        for i in range(0, len(texts), self.batch_size):
            pairs = text_pairs[i:i + self.batch_size] if text_pairs is not None else None
            feeds = self.featurise(texts[i:i + self.batch_size], pairs)
            chunks.append(self.session.run(["probabilities"], feeds)[0])
        probs = np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), dtype=np.float32)
        return apply_temperature(probs, self.temperature)
