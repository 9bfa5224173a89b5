"""The job report: what ``distill`` stores for it, the numbers and sentences on it, ``lelp report DIR``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from lelp.cli import build_app
from lelp.report import analysis
from lelp.report.collect import POINTS_PER_CLASS, TOP_TEXTS, subclass_section

SMALL_NGRAM = {"n_features": 2**12, "embedding_dim": 16, "hidden": 32}


@pytest.fixture(scope="module")
def artifact(tiny_teacher_dir, tiny_train_csv, tiny_eval_csv, tmp_path_factory):
    from lelp.pipeline import DistillConfig, distill

    out = tmp_path_factory.mktemp("report") / "student"
    distill(DistillConfig(teacher_dir=str(tiny_teacher_dir), train_path=str(tiny_train_csv),
                          eval_path=str(tiny_eval_csv), method="lelp", subclasses=2, epochs=2, max_length=16,
                          student="ngram", student_options=SMALL_NGRAM, device="cpu"), out,
            cache_dir=out.parent / "cache")
    return out


def test_distill_stores_what_the_report_needs(artifact):
    metrics = json.loads((artifact / "metrics.json").read_text())
    data = json.loads((artifact / "report_data.json").read_text())
    # the training history contract shared with early stopping (issue 9)
    history = metrics["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # the kept epoch is the first with the best held-out score
    assert metrics["training"]["best_epoch"] == max(history, key=lambda h: h["val_score"])["epoch"]
    assert all(h["train_loss"] > 0 and 0 <= h["val_score"] <= 1 for h in history)  # every job validates now
    assert set(metrics["stage_seconds"]) == {"load", "extract", "train", "baseline", "evaluate", "save"}
    ev = data["eval"]
    assert ev["rows"] == metrics["eval_rows"] == len(ev["labels"]) == len(ev["student_probs"])
    student_pred = np.asarray(ev["student_probs"]).argmax(1)
    teacher_pred = np.asarray(ev["teacher_probs"]).argmax(1)
    labels = np.asarray(ev["labels"])
    # the stored probabilities reproduce metrics.json's figures
    assert (student_pred == labels).mean() == pytest.approx(metrics["student"]["accuracy"])
    assert (student_pred == teacher_pred).mean() == pytest.approx(metrics["agreement"])
    assert ev["disagreements"] == int((student_pred != teacher_pred).sum())
    assert all(ex["teacher"] != ex["student"] for ex in ev["examples"])
    sub = data["subclasses"]
    assert sub["subclasses"] == 2 and [c["class"] for c in sub["classes"]] == metrics["labels"]
    for cls in sub["classes"]:
        assert len(cls["points"]) == len(cls["assignment"]) == min(cls["rows"], POINTS_PER_CLASS)
        assert set(cls["assignment"]) <= {0, 1} and sum(cls["subclass_rows"]) == cls["rows"]
        assert len(cls["top_texts"]) == 2 and all(0 < len(t) <= TOP_TEXTS for t in cls["top_texts"])
    d = data["data"]
    assert d["train_rows"] == 160 and sum(d["train_label_counts"].values()) == 160
    assert d["max_length"] == 16 and 0 <= d["truncated_share"] <= 1
    assert d["truncated_share"] == pytest.approx(np.mean(np.asarray(d["token_lengths"]) > 16))


def test_subclass_section_colours_each_row_by_its_subclass():
    rng = np.random.default_rng(0)
    n, dim = 200, 6
    classes = np.repeat([0, 1], n // 2)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    side = rng.random(n) > 0.5  # each class splits along axis 3, which the "head" (axes 0 and 1) ignores
    emb[:, 3] = np.where(side, 5.0, -5.0) + 0.1 * emb[:, 3]
    targets = np.zeros((n, 4), dtype=np.float32)
    for i in range(n):
        c, s = classes[i], int(side[i])
        targets[i, c * 2 + s], targets[i, c * 2 + 1 - s] = 0.9, 0.1
    null = np.eye(dim)[2:]
    texts = [f"row {i}" for i in range(n)]
    out = subclass_section(targets, classes, 2, emb, null, texts, ["a", "b"])
    for c, cls in enumerate(out["classes"]):
        rows = np.flatnonzero(classes == c)
        assert cls["rows"] == 100 and cls["assignment"] == side[rows].astype(int).tolist()
        pc1 = np.asarray(cls["points"])[:, 0]
        # the first principal component separates the two sub-classes
        a, b = pc1[side[rows]], pc1[~side[rows]]
        assert (a.min() > 0 > b.max()) or (a.max() < 0 < b.min())
        assert all(t["p"] == pytest.approx(0.9) for t in cls["top_texts"][0])


def test_reliability_and_ece():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.65, 0.35]])
    curve = analysis.reliability(labels, probs)
    # bin 0.9-1.0: confidence .95, accuracy 1; bin 0.6-0.7: confidence .65, accuracy .5
    assert [b["accuracy"] for b in curve["bins"]] == [0.5, 1.0]
    assert curve["ece"] == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)


def _cand(method, score, s=1):
    return {"method": method, "subclasses": s, "beta": 1.0, "tau": 1.0, "validation_accuracy": score}


@pytest.mark.parametrize("scores, chosen, needle", [
    ({"kd": 0.80, "lelp": 0.81}, "kd", "LELP did not beat plain KD on your data (within noise"),
    ({"kd": 0.80, "lelp": 0.60}, "kd", "LELP did worse than plain KD"),
    ({"kd": 0.60, "lelp": 0.90}, "lelp", "LELP beat plain KD on your data by 30.0 points"),
    ({"kd": 0.80, "lelp": 0.81}, "lelp", "within noise"),
    ({"kd": 0.60, "lelp": 0.70, "random_subclass": 0.90}, "random_subclass", "random-subclass control scored best"),
])
def test_verdict(scores, chosen, needle):
    cands = [_cand(m, v, 1 if m == "kd" else 2) for m, v in scores.items()]
    metrics = {"candidates": cands, "chosen": next(c for c in cands if c["method"] == chosen),
               "validation_rows": 400, "method": chosen}
    assert needle in analysis.verdict(metrics)


def test_verdict_without_a_search():
    metrics = {"candidates": [_cand("lelp", None, 2)], "chosen": _cand("lelp", None, 2), "method": "lelp"}
    assert analysis.verdict(metrics).startswith("No search")


def test_lelp_report_redraws_the_page_from_the_artifact_alone(artifact, tmp_path):
    copy = shutil.copytree(artifact, tmp_path / "copy", ignore=shutil.ignore_patterns("model.safetensors"))
    (copy / "report.html").unlink()
    result = CliRunner().invoke(build_app(), ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").read_bytes() == (artifact / "report.html").read_bytes()

    # texts from the data are escaped, never markup
    data = json.loads((copy / "report_data.json").read_text())
    data["eval"]["examples"] = [{"text": "<script>alert(1)</script>", "text_pair": None, "label": "negative",
                                 "teacher": "negative", "teacher_score": 0.9, "student": "positive",
                                 "student_score": 0.6}]
    (copy / "report_data.json").write_text(json.dumps(data))
    out = tmp_path / "elsewhere" / "page.html"
    assert CliRunner().invoke(build_app(), ["report", str(copy), "--out", str(out)]).exit_code == 0
    page = out.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize("setup, needle", [
    (lambda d: None, "has no metrics.json"),
    (lambda d: (d / "metrics.json").write_text("{}"), "has no report_data.json"),
    (lambda d: ((d / "metrics.json").write_text("{}"), (d / "report_data.json").write_text("[1]")),
     "does not hold a JSON object"),
])
def test_lelp_report_on_a_wrong_directory_is_one_line(setup, needle, tmp_path):
    setup(tmp_path)
    result = CliRunner().invoke(build_app(), ["report", str(tmp_path)])
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output


def test_lelp_report_imports_no_torch(artifact):
    code = ("import sys\nfrom lelp.report import write_report\n"
            f"write_report({str(artifact)!r}, {str(artifact / 'again.html')!r})\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (artifact / "again.html").unlink()


def test_report_of_an_unlabelled_evaluation_and_no_search(artifact, tmp_path):
    """Without eval labels there is no accuracy: the page says so instead of failing."""
    from lelp.report import write_report

    copy = shutil.copytree(artifact, tmp_path / "copy", ignore=shutil.ignore_patterns("model.safetensors"))
    data = json.loads((copy / "report_data.json").read_text())
    data["eval"]["labels"] = [-1] * len(data["eval"]["labels"])
    (copy / "report_data.json").write_text(json.dumps(data))
    metrics = json.loads((copy / "metrics.json").read_text())
    for side in ("student", "teacher"):
        metrics[side]["accuracy"] = metrics[side]["macro_f1"] = None
    (copy / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(copy).read_text()
    assert "calibration cannot be measured" in page and 'data-metric="keeps"' not in page
    # the disagreement matrix, training, one per class, the two data figures; no search chart
    assert page.count("<img") == 1 + 1 + len(metrics["labels"]) + 2
    assert "No search" in page


FULL = {"student": {"accuracy": 0.80, "sentences_per_second": 5000.0, "size_bytes": 1_000_000},
        "teacher": {"accuracy": 0.85, "sentences_per_second": 50.0, "size_bytes": 90_000_000},
        "agreement": 0.9, "eval_rows": 872}


def _without(path: str) -> dict:
    metrics = json.loads(json.dumps(FULL))
    *parents, key = path.split(".")
    node = metrics
    for p in parents:
        node = node[p]
    node[key] = None
    return metrics


@pytest.mark.parametrize("missing, absent", [
    (None, []),
    ("teacher.accuracy", ["keeps"]),                 # the teacher could not be scored
    ("student.accuracy", ["keeps", "accuracy"]),     # no labels: agreement only
    ("student.sentences_per_second", ["speed"]),
    ("teacher.sentences_per_second", ["speed"]),
    ("teacher.size_bytes", ["size"]),
    ("agreement", ["agreement"]),
    ("eval_rows", ["eval_rows"]),
])
def test_headline_never_shows_a_missing_figure(missing, absent):
    """Issue 19: "The student at 2.5 times its CPU speed..." rendered when the accuracy ratio was missing."""
    metrics = _without(missing) if missing else FULL
    h = analysis.headline(metrics)
    sentence = analysis.headline_text(metrics)
    shown = {p["metric"] for p in h["parts"] if "metric" in p}
    for key in absent:
        assert key not in shown and h[key] is None
    expected = {"keeps", "speed", "size", "agreement", "eval_rows"} - set(absent)
    if "agreement" in absent:
        expected.discard("eval_rows")  # the row count is part of the agreement clause
    for key in expected:
        assert key in shown, (key, sentence)
    assert all(p["text"] not in (None, "", "None") for p in h["parts"] if "metric" in p)
    assert "None" not in sentence and "nan" not in sentence.lower() and "  " not in sentence
    assert sentence[0].isupper() and sentence.endswith(".")
    assert not sentence.startswith("The student at")
    if "accuracy" in absent:
        assert "accuracy was not measured" in sentence
    elif "keeps" in absent:
        assert "The student's accuracy is 80.0%" in sentence and "keeps" not in sentence


def test_headline_of_a_teacher_at_zero_and_of_nothing_measured():
    zero = json.loads(json.dumps(FULL))
    zero["teacher"]["accuracy"] = 0.0  # the one-class job of issue 19: teacher 0%, student 100%
    assert "keeps" not in analysis.headline_text(zero)
    assert analysis.headline_text({}) == "No evaluation row has a label, so accuracy was not measured."
    from lelp.evaluate import keeps_line

    assert keeps_line(FULL) == analysis.headline_text(FULL)
    assert keeps_line(FULL).startswith("The student keeps 94.1% of the teacher's accuracy at 100 times its speed "
                                       "on one CPU core and 90.0 times smaller.")


def test_report_names_agreement_as_agreement(artifact, tmp_path):
    """Validation rows without labels are scored by agreement with the teacher: the page says so."""
    from lelp.report import write_report

    copy = shutil.copytree(artifact, tmp_path / "copy", ignore=shutil.ignore_patterns("model.safetensors"))
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["validation_metric"] = "teacher_agreement"
    (copy / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(copy).read_text()
    assert "agreement with the teacher (validation)" in page and "validation accuracy" not in page
    assert "not accuracy" in page
    metrics["validation_metric"] = "accuracy"
    (copy / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(copy).read_text()
    assert "validation accuracy" in page and "agreement with the teacher (validation)" not in page
