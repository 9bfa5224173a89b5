"""The report's "Exports" section: the ONNX packages made of this student and what each costs.

Exports happen after the job (``lelp export``, or the API's first ``?format=onnx`` request), so
the page written by ``distill`` cannot know them. The section sits between two comment markers
and is re-rendered on its own from ``metrics["export"]`` (Jinja2 only, no matplotlib, no numpy):
``lelp export`` splices it into the artifact's ``report.html``, and the API splices the model
row's current figures into the stored page when it serves it, so the page never shows stale
export figures and no process has to redraw the figures to add one table.
"""

from __future__ import annotations

import re

from lelp.report.templating import environment

START, END = "<!--lelp:exports-->", "<!--/lelp:exports-->"
_SECTION = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
VARIANT_ORDER = ("onnx-fp32", "onnx-int8")



def _points(delta: float | None) -> str | None:
    return None if delta is None else f"{100 * delta:+.2f}"


def export_rows(metrics: dict) -> list[dict]:
    """One row per export variant in ``metrics["export"]`` (fp32 first), ready for the table."""
    exports = metrics.get("export") or {}
    if not isinstance(exports, dict):
        return []
    names = sorted(exports, key=lambda v: (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), v))
    rows = []
    for variant in names:
        check = exports[variant]
        if not isinstance(check, dict) or "error" in check:  # a failed build: no figures (its error is in events)
            continue
        fp32, int8 = check.get("fp32") or {}, check.get("int8")
        size = check.get("size_bytes")
        row = {"variant": variant, "size_mb": None if size is None else size / 1e6,
               "rows": check.get("rows"), "source": check.get("rows_source"),
               "max_abs_diff": fp32.get("max_abs_diff"), "tolerance": check.get("tolerance"),
               "accuracy": fp32.get("accuracy"), "agreement": fp32.get("agreement_with_torch"),
               "delta": None, "against": "torch"}
        if isinstance(int8, dict):
            row.update(accuracy=int8.get("accuracy"), agreement=int8.get("agreement_with_fp32"),
                       delta=_points(int8.get("accuracy_delta_vs_fp32")), against="fp32",
                       max_abs_diff=int8.get("max_abs_diff_vs_fp32"))
        rows.append(row)
    return rows


def render_exports(metrics: dict) -> str:
    """The section's HTML, markers included."""
    return environment().get_template("exports.html.j2").render(rows=export_rows(metrics), start=START, end=END)


def splice_exports(html: str, metrics: dict) -> str:
    """``html`` with its exports section replaced by one drawn from ``metrics`` (unchanged if it has none)."""
    section = render_exports(metrics)
    return _SECTION.sub(lambda _: section, html, count=1)
