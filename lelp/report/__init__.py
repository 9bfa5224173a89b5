"""The job report: ``report.html`` in every student artifact, and the data it is drawn from.

``distill`` writes ``report_data.json`` (what the page needs that ``metrics.json`` lacks: eval
probabilities of both models, pseudo-subclass samples, text lengths) and then ``report.html``;
``lelp report DIR`` redraws the page from those files alone, without the teacher.

Modules: ``collect`` (arrays -> report data, numpy only), ``analysis`` (report data -> tables
and sentences), ``plots`` (matplotlib figures as inline SVG), ``render`` (Jinja2 page).
Nothing here imports torch; matplotlib is imported only when a page is drawn.
"""

from __future__ import annotations

from lelp.report.files import REPORT_DATA_FILE, REPORT_FILE, write_report, write_report_data

__all__ = ["REPORT_DATA_FILE", "REPORT_FILE", "write_report", "write_report_data"]
