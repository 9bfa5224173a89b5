"""The Jinja2 environment of the report's templates (Jinja2 only: the API imports it too)."""

from __future__ import annotations

from functools import cache


@cache
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("lelp.report", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x, digits=1: "\u2013" if x is None else f"{x * 100:.{digits}f}%"
    env.filters["num"] = lambda x, spec=",": "\u2013" if x is None else format(x, spec)
    return env
