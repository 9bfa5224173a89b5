"""``metrics.json`` + ``report_data.json`` + the manifest -> one self-contained HTML page (Jinja2).

The template (``lelp/report/templates/report.html.j2``) escapes every value (autoescape on:
texts come from users' data); the figures arrive as ``data:`` URIs from ``lelp.report.plots``.
"""

from __future__ import annotations

import numpy as np

from lelp.method.registry import SUBCLASS_METHODS
from lelp.report import analysis, exports
from lelp.report.templating import environment

STAGES = (("load", "loading the teacher and the data"), ("extract", "teacher features"),
          ("train", "training (all candidates)"), ("baseline", "no-teacher baseline (ce on the labelled rows)"),
          ("evaluate", "evaluation"), ("save", "saving, speed test"))



def _compare_rows(metrics: dict) -> list[dict]:
    rows = []
    for name in ("student", "teacher"):
        m = metrics.get(name, {})
        size = m.get("size_bytes")
        # the student's kind (``architecture`` in artifacts written before the rename), the teacher's class
        model = (m.get("kind") or m.get("architecture")) if name == "student" else m.get("architecture")
        rows.append({"name": name, "model": model, "accuracy": m.get("accuracy"),
                     "macro_f1": m.get("macro_f1"), "parameters": m.get("parameters"),
                     "size_mb": None if size is None else size / 1e6, "sps": m.get("sentences_per_second")})
    base = metrics.get("baseline") or {}
    if base.get("trained"):  # the same kind without the teacher: same size and speed as the student
        student = metrics.get("student", {})
        model = f"{base.get('kind')} (ce, {base.get('train_rows', 0):,} labelled rows)"
        rows.append({"name": "no teacher", "model": model,
                     "accuracy": base.get("accuracy"), "macro_f1": base.get("macro_f1"),
                     "parameters": student.get("parameters"), "size_mb": None, "sps": None})
    return rows


def _model_section(metrics: dict, data: dict, labels: list[str], plots) -> dict:
    ev = data.get("eval", {})
    y = np.asarray(ev.get("labels", []), dtype=np.int64)
    sp, tp = analysis.probs_of(ev, "student_probs"), analysis.probs_of(ev, "teacher_probs")
    c = len(labels)
    s_pred = sp.argmax(1) if len(sp) else np.zeros(0, dtype=np.int64)
    t_pred = tp.argmax(1) if len(tp) else np.zeros(0, dtype=np.int64)
    student_pc, teacher_pc = analysis.per_class(y, s_pred, c), analysis.per_class(y, t_pred, c)
    per_class = [{"label": labels[k], "student": student_pc[k], "teacher": teacher_pc[k]}
                 for k in range(c)] if student_pc else []
    figures = []
    if (y >= 0).any():
        figures += [plots.confusion(analysis.confusion(y, s_pred, c), labels, "student", "true label", "student"),
                    plots.confusion(analysis.confusion(y, t_pred, c), labels, "teacher", "true label", "teacher")]
    figures.append(plots.confusion(analysis.confusion(t_pred, s_pred, c), labels, "student vs teacher",
                                   "teacher", "student", cmap="Oranges"))
    raw = analysis.probs_of(ev, "student_raw_probs")
    curves = {"student": analysis.reliability(y, sp), "teacher": analysis.reliability(y, tp)}
    if len(raw):  # a job since issue 22: the student before and after its temperature
        curves = {"student before calibration": analysis.reliability(y, raw), **curves}
    calibration = None
    if curves["student"]["bins"]:
        calibration = {"figure": plots.reliability(curves), "student_ece": curves["student"]["ece"],
                       "teacher_ece": curves["teacher"]["ece"],
                       "raw_ece": curves["student before calibration"]["ece"] if len(raw) else None,
                       "temperature": (metrics.get("calibration") or {}).get("temperature")}
    return {"rows": ev.get("rows", 0), "sampled_rows": ev.get("sampled_rows", 0), "per_class": per_class,
            "confusion": figures, "examples": ev.get("examples", []), "disagreements": ev.get("disagreements"),
            "calibration": calibration}


def _cascade_section(metrics: dict, plots) -> dict | None:
    """The cascade's curve on the evaluation rows (metrics.json ``cascade.curve``) and a few rows of it."""
    cascade = metrics.get("cascade") or {}
    curve = cascade.get("curve") or []
    teacher = (metrics.get("teacher") or {}).get("accuracy")
    if not curve or not teacher:
        return None
    rows = [p for p in curve if any(abs(p["deferred_fraction"] - f) < 0.011 for f in (0, 0.05, 0.1, 0.2, 0.4, 1.0))]
    seen, table = set(), []
    for p in rows:  # one row per listed share
        key = round(p["deferred_fraction"], 1 if p["deferred_fraction"] >= 0.1 else 2)
        if key not in seen:
            seen.add(key)
            table.append({**p, "kept": p["accuracy"] / teacher})
    return {"figure": plots.cascade(curve, teacher), "rows": table, "redistil": cascade.get("redistil")}


def _training_section(metrics: dict, plots) -> dict:
    training = metrics.get("training") or {}
    history = training.get("history") or []
    best = training.get("best_epoch")
    stage_seconds = metrics.get("stage_seconds") or {}
    stages = [{"name": name, "what": what, "seconds": stage_seconds[name]} for name, what in STAGES
              if name in stage_seconds]
    figure = plots.training(history, best, analysis.validation_name(metrics)) if history else None
    return {"history": history, "best_epoch": best, "figure": figure,
            "stages": stages}


def _search_section(metrics: dict, plots) -> dict:
    chosen = metrics.get("chosen", {})
    rows = []
    for cand in metrics.get("candidates", []):
        rows.append({**cand, "winner": analysis.is_winner(cand, chosen),
                     "name": _candidate_name(cand), "score": analysis.candidate_score(cand)})
    scored = [r for r in rows if r["score"] is not None]
    figure = None
    if len(scored) >= 2:
        winner = next((i for i, r in enumerate(scored) if r["winner"]), None)
        figure = plots.candidates([r["name"] for r in scored], [r["score"] for r in scored], winner,
                                  analysis.validation_name(metrics))
    return {"rows": rows, "figure": figure, "verdict": analysis.verdict(metrics),
            "validation_rows": metrics.get("validation_rows", 0), "metric": analysis.validation_metric(metrics),
            "metric_name": analysis.validation_name(metrics)}


def _student_search_section(metrics: dict, plots) -> dict | None:
    """``student="auto"``: every kind's validation and evaluation accuracy, speed and size, and the plot."""
    search = metrics.get("student_search")
    if not search:
        return None
    rows = search.get("candidates", [])
    scored = [r for r in rows if r.get("validation_accuracy") is not None and r.get("x_teacher") is not None]
    figure = None
    if scored:
        chosen = next((i for i, r in enumerate(scored) if r.get("chosen")), None)
        figure = plots.student_search([r["kind"] for r in scored], [r["x_teacher"] for r in scored],
                                      [r["validation_accuracy"] for r in scored], chosen,
                                      float(search.get("min_speedup", 0)))
    return {"rows": rows, "figure": figure, "min_speedup": search.get("min_speedup"),
            "chosen": search.get("chosen"), "floor_met": search.get("floor_met", True),
            "rounds": (search.get("speed") or {}).get("rounds"),
            "threads": (search.get("speed") or {}).get("threads")}


def _candidate_name(c: dict) -> str:
    if c.get("subclasses", 1) > 1 or c["method"] in SUBCLASS_METHODS:
        return f"{c['method']} S={c.get('subclasses')} \u03b2={c.get('beta'):g} \u03c4={c.get('tau'):g}"
    return f"{c['method']} \u03c4={c.get('tau'):g}"


def _subclass_section(data: dict, method: str, plots) -> dict:
    section = data.get("subclasses") or {}
    s = int(section.get("subclasses", 1))
    classes = []
    for cls in section.get("classes", []):
        title = f"{cls['class']}: {cls['rows']:,} rows"
        figure = plots.subclasses(cls["points"], cls["assignment"], s, title) if cls.get("points") else None
        classes.append({**cls, "figure": figure})
    return {"subclasses": s, "classes": classes, "method": method}


def _data_section(data: dict, labels: list[str], plots) -> dict:
    d = data.get("data") or {}
    splits = {}  # a split without labels (unlabelled transfer data) has no bars
    for split in ("train", "eval"):
        counts = [int((d.get(f"{split}_label_counts") or {}).get(name, 0)) for name in labels]
        if sum(counts):
            splits[split] = counts
    lengths = d.get("token_lengths") or []
    return {**d, "counts_figure": plots.label_counts(labels, splits) if splits else None,
            "train_labelled": sum((d.get("train_label_counts") or {}).values()),
            "lengths_figure": plots.token_lengths(lengths, d.get("max_length", 0)) if lengths else None,
            "median_tokens": float(np.median(lengths)) if lengths else None,
            "length_sample": len(lengths)}


def _provenance(metrics: dict, data: dict, manifest: dict) -> list[tuple[str, str]]:
    sources = manifest.get("sources", {})
    prov = data.get("provenance", {})
    hp = manifest.get("hyperparameters", {})
    rows = [("method", str(manifest.get("method", metrics.get("method")))),
            ("student", f"{prov.get('student', metrics.get('student', {}).get('kind'))}"),
            ("teacher", f"{metrics.get('teacher', {}).get('architecture')} ({prov.get('teacher_name', '')})"),
            ("teacher sha256", str(sources.get("teacher_sha256"))),
            ("training data sha256", str(sources.get("train_sha256"))),
            ("eval data sha256", str(sources.get("eval_sha256") or "none (held out from the training data)")),
            ("validation data sha256", str(sources.get("validation_sha256")
                                           or "none (10% of the training rows held out)")),
            ("hyperparameters", ", ".join(f"{k}={v}" for k, v in hp.items())),
            ("library", f"lelp-distill {prov.get('library_version', '?')}"),
            ("artifact format", str(manifest.get("format_version", "?"))),
            ("created", str(manifest.get("created_at", "?")))]
    return rows


def build_context(metrics: dict, data: dict, manifest: dict) -> dict:
    """Everything the template shows, figures drawn."""
    from lelp.report import plots

    labels = list(metrics.get("labels") or manifest.get("labels") or data.get("labels") or [])
    method = str(metrics.get("method", manifest.get("method", "?")))
    return {
        "labels": labels, "method": method, "method_name": analysis.method_name(method),
        "headline": analysis.headline(metrics), "compare": _compare_rows(metrics),
        "agreement": metrics.get("agreement"),
        "models": _model_section(metrics, data, labels, plots),
        "training": _training_section(metrics, plots),
        "cascade": _cascade_section(metrics, plots),
        "search": _search_section(metrics, plots),
        "student_search": _student_search_section(metrics, plots),
        "inside": _subclass_section(data, method, plots),
        "data": _data_section(data, labels, plots),
        "exports": {"rows": exports.export_rows(metrics), "start": exports.START, "end": exports.END},
        "provenance": _provenance(metrics, data, manifest),
        "created_at": manifest.get("created_at", ""),
    }


def render_report(metrics: dict, data: dict, manifest: dict) -> str:
    return environment().get_template("report.html.j2").render(**build_context(metrics, data, manifest))
