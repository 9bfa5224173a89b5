"""ONNX export of every student kind, fp32 and int8, run on onnxruntime against the torch student."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lelp.artifacts import load_student  # noqa: E402
from lelp.data.datasets import encode_labels, read_table  # noqa: E402
from lelp.errors import ConfigError  # noqa: E402
from lelp.export import FP32_TOLERANCE, CheckRows, OnnxPredictor, export_onnx, record_export  # noqa: E402
from lelp.export.graphs import GRAPHS  # noqa: E402
from lelp.export.onnx_export import INT8_RECIPE, INT8_RECIPES, quantize_int8  # noqa: E402
from lelp.pipeline import DistillConfig, distill  # noqa: E402
from lelp.students.registry import STUDENT_KINDS  # noqa: E402

SMALL = {"ngram": {"n_features": 2**12, "embedding_dim": 16, "hidden": 32}, "encoder_mlp": {"hidden": 32},
         "transformer": None, "static": {"hidden": 16, "pca_dims": 8},
         "cnn": {"hidden": 16, "pca_dims": 8, "filters": 8, "widths": [2, 3]}}


@pytest.fixture(scope="module")
def students(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path_factory) -> dict:
    """One tiny LELP student (S=2) of every kind."""
    root = tmp_path_factory.mktemp("students")
    out = {}
    for kind in GRAPHS:
        extra = {"student_base": str(tiny_teacher_dir)} if kind == "encoder_mlp" else {}
        result = distill(DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv),
                                       eval_path=str(tiny_eval_csv), method="lelp", student=kind, subclasses=2,
                                       epochs=1, max_length=32, student_options=SMALL[kind], **extra),
                         root / kind, cache_dir=root / "cache")
        out[kind] = result.artifact_dir
    return out


def eval_rows(path, labels) -> CheckRows:
    data = read_table(path)
    return CheckRows(data.texts, None, np.asarray(encode_labels(data.labels, labels, source="eval")))


def test_every_student_kind_has_an_exporter():
    from lelp.export.runtime import ONNX_KINDS

    assert set(GRAPHS) == set(STUDENT_KINDS)  # a new kind (static) needs one more GRAPHS entry
    assert set(ONNX_KINDS) == set(GRAPHS)  # the service's torch-free copy of the list


def test_hf_pipeline_names_every_output_and_two_lines_fold_them(students):
    from collections import Counter

    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(students["transformer"]), top_k=None)
    scores = classifier(["good great film"])[0]
    assert sorted(s["label"] for s in scores) == ["negative/0", "negative/1", "positive/0", "positive/1"]
    probs = Counter()  # the README's two lines:
    for s in scores: probs[s["label"].rsplit("/", 1)[0]] += s["score"]  # noqa: E701
    student = load_student(students["transformer"])
    want = student.predict_proba(["good great film"])[0]
    # the artifact's README recipe: the folded probabilities, then its calibration temperature
    from lelp.cascade import apply_temperature

    folded = np.asarray([[probs["negative"], probs["positive"]]])
    assert apply_temperature(folded, student.temperature)[0] == pytest.approx(list(want), abs=1e-5)


@pytest.mark.parametrize("kind", list(GRAPHS))
@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_matches_the_torch_student_on_onnxruntime(kind, quantize, students, tiny_eval_csv, tmp_path):
    predictor = load_student(students[kind])
    rows = eval_rows(tiny_eval_csv, predictor.labels)
    manifest = export_onnx(students[kind], tmp_path / "pkg", quantize=quantize, rows=rows)
    check = manifest["check"]
    assert check["passed"] and check["rows"] == len(rows.texts) and check["rows_source"] == "eval"
    assert check["fp32"]["max_abs_diff"] <= FP32_TOLERANCE
    assert check["torch"]["accuracy"] is not None

    # independently of the recorded figures: load the package and compare with torch here
    onnx = OnnxPredictor(tmp_path / "pkg")
    texts = rows.texts + ["", "good good good", "a brand new word nobody saw: zyxxy"]
    got, want = onnx.predict_proba(texts), predictor.predict_proba(texts)
    assert got.shape == want.shape == (len(texts), 2)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)  # sub-classes folded: C columns summing to 1
    if quantize is None:
        np.testing.assert_allclose(got, want, atol=FP32_TOLERANCE)
    else:
        i8 = check["int8"]
        assert 0.0 <= i8["agreement_with_fp32"] <= 1.0 and i8["accuracy"] is not None
        assert i8["accuracy_delta_vs_fp32"] == pytest.approx(i8["accuracy"] - check["fp32"]["accuracy"])
        assert np.abs(got - want).max() < 0.2  # quantized, not broken
    assert onnx.predict(["good film"])[0]["label"] in predictor.labels
    assert onnx.predict_proba([]).shape == (0, 2)


@pytest.mark.parametrize("recipe", list(INT8_RECIPES))
def test_every_int8_recipe_gives_a_working_graph(recipe, students, tmp_path):
    """The recipes benchmarks/quantize.py compares all quantize the same fp32 graph into one that runs."""
    manifest = export_onnx(students["transformer"], tmp_path / "pkg")
    target = tmp_path / "pkg" / f"model-{recipe}.onnx"
    quantize_int8(tmp_path / "pkg" / "model.onnx", target, recipe)
    assert 0 < target.stat().st_size < (tmp_path / "pkg" / "model.onnx").stat().st_size  # int8 weights
    texts = ["good film", "bad plot", "a plain sentence"]
    fp32 = OnnxPredictor(tmp_path / "pkg").predict_proba(texts)
    int8 = OnnxPredictor(tmp_path / "pkg", model_file=target.name).predict_proba(texts)
    assert int8.shape == fp32.shape and np.abs(int8 - fp32).max() < 0.2
    assert manifest.get("int8_recipe") is None
    if recipe == INT8_RECIPE:
        int8_manifest = export_onnx(students["transformer"], tmp_path / "pkg8", quantize="int8")
        assert int8_manifest["int8_recipe"] == {"name": recipe, **INT8_RECIPES[recipe]}


def test_zip_package_runs_with_onnxruntime_alone(students, tmp_path):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    manifest = export_onnx(students["transformer"], tmp_path / "student.zip")
    assert manifest["check"]["rows_source"] == "probe" and manifest["check"]["torch"]["accuracy"] is None
    with zipfile.ZipFile(tmp_path / "student.zip") as archive:
        names = set(archive.namelist())
        compression = {info.filename: info.compress_type for info in archive.infolist()}
        archive.extractall(tmp_path / "unzipped")
    assert {"model.onnx", "lelp_onnx.json", "README.md", "tokenizer.json"} <= names
    # weights are stored (deflate buys ~7% on float tables for seconds per job), text is deflated
    assert compression["model.onnx"] == zipfile.ZIP_STORED
    assert compression["lelp_onnx.json"] == compression["tokenizer.json"] == zipfile.ZIP_DEFLATED
    meta = json.loads((tmp_path / "unzipped" / "lelp_onnx.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "unzipped")
    enc = tokenizer(["good film", "bad plot"], padding=True, truncation=True, max_length=32, return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "unzipped" / "model.onnx"))
    probs = session.run(["probabilities"], {name: enc[name] for name in meta["inputs"]})[0]
    np.testing.assert_allclose(probs, load_student(students["transformer"]).predict_proba(["good film", "bad plot"]),
                               atol=FP32_TOLERANCE)


def test_record_export_puts_the_figures_in_metrics(students, tmp_path):
    import shutil

    artifact = shutil.copytree(students["ngram"], tmp_path / "ngram")
    manifest = export_onnx(artifact, tmp_path / "pkg", quantize="int8")
    metrics = record_export(artifact, manifest)
    saved = json.loads((artifact / "metrics.json").read_text())
    assert saved["export"]["onnx-int8"] == metrics["export"]["onnx-int8"] == manifest["check"]
    assert "student" in saved  # the distillation's own figures are kept


def test_the_report_shows_each_export_and_its_cost(students, tmp_path):
    import re
    import shutil

    artifact = shutil.copytree(students["ngram"], tmp_path / "ngram")
    page = (artifact / "report.html").read_text()
    assert 'id="exports"' in page and "No export yet" in page and 'data-variant=' not in page
    figures = page.count("data:image/svg+xml")
    eval_csv = tmp_path / "eval.csv"
    eval_csv.write_text("text,label\ngood great film,positive\nbad awful plot,negative\n")
    rows = eval_rows(eval_csv, ["negative", "positive"])
    for quantize in (None, "int8"):
        record_export(artifact, export_onnx(artifact, tmp_path / f"pkg-{quantize}", quantize=quantize, rows=rows))
    page = (artifact / "report.html").read_text()
    assert "No export yet" not in page and page.count('id="exports"') == 1
    assert page.count("data:image/svg+xml") == figures  # only the section changed
    int8 = json.loads((artifact / "metrics.json").read_text())["export"]["onnx-int8"]["int8"]
    row = re.search(r'<tr data-variant="onnx-int8">.*?</tr>', page, re.S).group(0)
    assert f"{100 * int8['accuracy_delta_vs_fp32']:+.2f}" in row and f"{100 * int8['accuracy']:.2f}%" in row
    assert '<tr data-variant="onnx-fp32">' in page


def test_bad_requests_are_user_errors(students, tmp_path):
    with pytest.raises(ConfigError, match="quantization"):
        export_onnx(students["ngram"], tmp_path / "x.zip", quantize="int4")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="non-empty"):
        export_onnx(students["ngram"], tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_fast_hasher_gives_the_vectorizers_rows():
    from lelp.students.ngram import FastHasher, HashingSpec

    texts = ["a lovely warm film", "", "!!! ?? the the the", "Ünïcode wörds and CAPS", "one", "x y " * 50]
    spec = HashingSpec(n_features=2**10)
    want = spec.vectorizer().transform(texts).tocsr()
    want.sort_indices()
    indptr, indices, data = FastHasher(spec).transform(texts)
    np.testing.assert_array_equal(indptr, want.indptr)
    np.testing.assert_array_equal(indices, want.indices)
    np.testing.assert_allclose(data, want.data, rtol=1e-6)
    assert data.dtype == np.float32
