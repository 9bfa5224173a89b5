"""``export_onnx``: a student artifact -> an ONNX package (fp32, or int8 on request), checked.

The graph comes from ``torch.onnx.export`` (the TorchScript exporter: it works offline, is
fast, and its standard opset-17 ops are what ``quantize_dynamic`` knows); int8 is
onnxruntime's own ``quantize_dynamic`` (int8 weights, activations quantized per batch at run
time). No graph is edited by hand. Every export is run on onnxruntime against the torch
student (``lelp.export.check``) before it is published, and the figures travel in the
package's ``lelp_onnx.json`` (``check``) for the caller to put in the artifact's metrics.

Package layout (a directory, or the same files in a ``.zip``)::

    model.onnx        inputs: the tokenizer's ids (or hashed ids/offsets/weights), output:
                      "probabilities" (batch, C), sub-classes already summed
    lelp_onnx.json    labels, inputs, preprocessing (tokenizer max_length or hashing spec), check
    tokenizer files   tokenizer kinds only (``AutoTokenizer.from_pretrained(dir)``)
    README.md         how to run it with onnxruntime alone
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from lelp.errors import ArtifactError, ConfigError
from lelp.export.check import MAX_CHECK_ROWS, CheckRows, compare, score
from lelp.export.runtime import (
    EXTRA_HINT,
    ONNX_FORMAT_VERSION,
    ONNX_MANIFEST,
    QUANTIZE_CHOICES,
    OnnxPredictor,
    variant_name,
)

OPSET = 17

_README = """# {kind} student exported to ONNX ({variant})

Labels (the columns of `probabilities`): {labels}. Sub-classes are already summed: each row
sums to 1. Inputs: {inputs}. Checked against the torch student on {rows} {source} rows:
{figures}

```python
import onnxruntime as ort
{featurise}
session = ort.InferenceSession("model.onnx")
probabilities = session.run(["probabilities"], feeds)[0]   # (n, {classes})
```
"""

_TOKENIZER_SNIPPET = """from transformers import AutoTokenizer  # or tokenizers.Tokenizer.from_file("tokenizer.json")
tokenizer = AutoTokenizer.from_pretrained(".")
enc = tokenizer(["some text"], truncation=True, max_length={max_length}, padding=True, return_tensors="np")
feeds = {{name: enc[name] for name in {inputs}}}"""

_HASHING_SNIPPET = """from sklearn.feature_extraction.text import HashingVectorizer
hv = HashingVectorizer(n_features={n_features}, ngram_range=({ngram_min}, {ngram_max}), lowercase={lowercase},
                       token_pattern={token_pattern!r}, alternate_sign=False, norm="l1", dtype="float32")
m = hv.transform(["some text"]).tocsr(); m.sort_indices()   # a text pair: a + {pair_separator!r} + b
feeds = {{"ids": m.indices.astype("int64"), "offsets": m.indptr[:-1].astype("int64"), "weights": m.data}}"""


_TOKEN_IDS_SNIPPET = """import numpy as np
from transformers import PreTrainedTokenizerFast
tokenizer = PreTrainedTokenizerFast(tokenizer_file="tokenizer.json")
rows = tokenizer(["some text"], add_special_tokens=False, truncation=True, max_length={max_length})["input_ids"]
feeds = {{"ids": np.array([t for r in rows for t in r], dtype="int64"),
         "offsets": np.cumsum([0] + [len(r) for r in rows[:-1]]).astype("int64")}}"""


_PADDED_TOKEN_IDS_SNIPPET = """import numpy as np
from transformers import PreTrainedTokenizerFast
tokenizer = PreTrainedTokenizerFast(tokenizer_file="tokenizer.json")
rows = tokenizer(["some text"], add_special_tokens=False, truncation=True, max_length={max_length})["input_ids"]
width = max([1] + [len(r) for r in rows])   # zero-padded, at least one column
ids = np.zeros((len(rows), width), "int64"); mask = np.zeros_like(ids)
for i, r in enumerate(rows): ids[i, :len(r)], mask[i, :len(r)] = r, 1
feeds = {{"input_ids": ids, "attention_mask": mask}}"""


def require_onnx() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)}: {EXTRA_HINT}", param="format")


def _trace(graph, path: Path) -> None:
    import warnings

    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the check below is what counts
        torch.onnx.export(graph.module, graph.example, str(path), input_names=graph.input_names,
                          output_names=["probabilities"], dynamic_axes=graph.dynamic_axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)


# onnxruntime ``quantize_dynamic`` settings compared by ``benchmarks/quantize.py`` (accuracy cost
# and speed side by side on one student); ``INT8_RECIPE`` is the one every int8 export uses.
INT8_RECIPES: dict[str, dict] = {
    "all": {},                                          # every op onnxruntime can quantize, per tensor
    "per_channel": {"per_channel": True},               # one scale per output channel of each weight
    "matmul": {"op_types_to_quantize": ["MatMul"]},     # embeddings (Gather) stay fp32
    "matmul_per_channel": {"op_types_to_quantize": ["MatMul"], "per_channel": True},
}
# per_channel: on a 3-layer MiniLM student (benchmarks/README.md) it agreed with fp32 on 99.2% of
# sst2 dev rows (per tensor: 98.4%) at 4.4x torch fp32's sentences/s, embeddings quantized too.
INT8_RECIPE = "per_channel"


def quantize_int8(source: Path, target: Path, recipe: str = INT8_RECIPE) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, **INT8_RECIPES[recipe])


def _figures(check: dict) -> str:
    parts = [f"fp32 max |diff| {check['fp32']['max_abs_diff']:.2e} (tolerance {check['tolerance']:g})"]
    if "int8" in check:
        i8 = check["int8"]
        parts.append(f"int8 agrees with fp32 on {i8['agreement_with_fp32']:.2%} of rows")
        if i8["accuracy_delta_vs_fp32"] is not None:
            parts.append(f"int8 accuracy {i8['accuracy']:.4f} ({100 * i8['accuracy_delta_vs_fp32']:+.2f} points)")
    return "; ".join(parts) + "."


def _write_readme(work: Path, manifest: dict) -> None:
    spec = manifest["preprocessing"]
    if spec["type"] == "tokenizer":
        featurise = _TOKENIZER_SNIPPET.format(max_length=spec["max_length"], inputs=manifest["inputs"])
    elif spec["type"] == "token_ids":
        featurise = _TOKEN_IDS_SNIPPET.format(max_length=spec["max_length"])
    elif spec["type"] == "padded_token_ids":
        featurise = _PADDED_TOKEN_IDS_SNIPPET.format(max_length=spec["max_length"])
    else:
        featurise = _HASHING_SNIPPET.format(**spec)
    check = manifest["check"]
    (work / "README.md").write_text(_README.format(
        kind=manifest["kind"], variant=manifest["variant"], labels=", ".join(manifest["labels"]),
        inputs=", ".join(manifest["inputs"]), rows=check["rows"], source=check["rows_source"],
        figures=_figures(check), featurise=featurise, classes=len(manifest["labels"])))


def build_package(artifact_dir: str | Path, work: Path, *, quantize: str | None = None,
                  rows: CheckRows | None = None) -> dict:
    """Export, check and write the package files into the empty directory ``work``; returns its manifest.

    Raises ``ArtifactError`` when the fp32 graph does not reproduce the torch student.
    """
    require_onnx()
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ConfigError(f"unknown quantization {quantize!r}; choose {', '.join(QUANTIZE_CHOICES)}",
                          param="quantize")
    from lelp.artifacts import load_student, read_manifest
    from lelp.export.graphs import graph_for

    student_manifest = read_manifest(artifact_dir)
    predictor = load_student(artifact_dir)
    rows = (rows or CheckRows.probe()).head(MAX_CHECK_ROWS)
    torch_probs = score(predictor.predict_proba, rows)  # before tracing: what the artifact itself predicts
    graph = graph_for(predictor, student_manifest)
    fp32 = work / ("model.onnx" if quantize is None else "model-fp32.onnx")
    _trace(graph, fp32)
    manifest = {
        "format_version": ONNX_FORMAT_VERSION, "kind": student_manifest["kind"], "variant": variant_name(quantize),
        "quantize": quantize, "labels": list(student_manifest["labels"]),
        "subclasses": int(student_manifest["subclasses"]), "inputs": graph.input_names,
        "temperature": float(student_manifest.get("temperature", 1.0)), "calibrated": True,  # in the graph
        "output": "probabilities", "opset": OPSET, "preprocessing": graph.preprocessing,
        "source": {"method": student_manifest.get("method"), "sources": student_manifest.get("sources"),
                   "created_at": student_manifest.get("created_at")},
    }
    if graph.tokenizer is not None:
        graph.tokenizer.save_pretrained(work)
    (work / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=2))
    if quantize == "int8":
        quantize_int8(fp32, work / "model.onnx")
        manifest["int8_recipe"] = {"name": INT8_RECIPE, **INT8_RECIPES[INT8_RECIPE]}

    fp32_probs = score(OnnxPredictor(work, model_file=fp32.name).predict_proba, rows)
    int8_probs = score(OnnxPredictor(work).predict_proba, rows) if quantize else None
    check = compare(torch_probs, fp32_probs, int8_probs, rows)
    import onnxruntime
    import torch

    check.update(versions={"onnxruntime": onnxruntime.__version__, "torch": torch.__version__},
                 size_bytes=(work / "model.onnx").stat().st_size)
    if not check["passed"]:
        raise ArtifactError(f"the ONNX export differs from the torch student by {check['fp32']['max_abs_diff']:.2e} "
                            f"(tolerance {check['tolerance']:g}); not exported", param="format")
    if quantize:
        fp32.unlink()
    manifest["check"] = check
    (work / ONNX_MANIFEST).write_text(json.dumps(manifest, indent=2))
    _write_readme(work, manifest)
    return manifest


# Weights are stored, not deflated: float tables shrink by ~7% under deflate at ~2.4 s per 67 MB
# (an n-gram student's table), which was half of a small job's export time; text files still deflate.
STORED_SUFFIXES = (".onnx", ".onnx_data", ".safetensors")


def write_zip(package_dir: Path, target: Path) -> None:
    """The package's files at the top level of a zip (written beside ``target``, then renamed)."""
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(package_dir.rglob("*")):
            if file.is_file():
                stored = file.name.endswith(STORED_SUFFIXES)
                archive.write(file, file.relative_to(package_dir).as_posix(),
                              compress_type=zipfile.ZIP_STORED if stored else None)
    partial.replace(target)


def export_onnx(artifact_dir: str | Path, out: str | Path, *, quantize: str | None = None,
                rows: CheckRows | None = None) -> dict:
    """Export ``artifact_dir`` to ``out`` (a ``.zip`` file, or else a directory); returns the package manifest.

    ``rows`` are the check rows (eval data); without them a built-in probe set gives the
    label-free figures (max difference, agreement) only.
    """
    out = Path(out)
    if out.exists() and out.is_dir() and out.suffix != ".zip" and any(out.iterdir()) \
            and not (out / ONNX_MANIFEST).is_file():
        raise ConfigError(f"{out} is a non-empty directory that is not an ONNX package; choose another --out",
                          param="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lelp-onnx-", dir=out.parent) as tmp:
        work = Path(tmp) / "package"
        work.mkdir()
        manifest = build_package(artifact_dir, work, quantize=quantize, rows=rows)
        if out.suffix == ".zip":
            write_zip(work, out)
        else:
            if out.exists():
                shutil.rmtree(out)
            shutil.move(str(work), str(out))
    return manifest


def record_export(artifact_dir: str | Path, manifest: dict) -> dict:
    """Put an export's check figures into the artifact's ``metrics.json`` (key ``export``) and its report's
    exports section; returns the metrics."""
    file = Path(artifact_dir) / "metrics.json"
    metrics = json.loads(file.read_text()) if file.is_file() else {}
    metrics.setdefault("export", {})[manifest["variant"]] = manifest["check"]
    file.write_text(json.dumps(metrics, indent=2))
    report = Path(artifact_dir) / "report.html"
    if report.is_file():  # the page's exports section, redrawn alone (no figures to redraw)
        from lelp.report.exports import splice_exports

        tmp = report.with_name(".report.html.tmp")
        tmp.write_text(splice_exports(report.read_text(encoding="utf-8"), metrics), encoding="utf-8")
        os.replace(tmp, report)
    return metrics
