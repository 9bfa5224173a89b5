"""The web console at ``/ui`` and the service's HTML templates (Jinja2, static files beside them).

The console is one page of plain HTML and a little JavaScript over the JSON API: no build
step, nothing from a CDN. The API key lives in the browser tab's ``sessionStorage`` and is
sent as the ``Authorization`` header; it never appears in a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)

# The reports shown in the console's iframe inherit this policy: their inline <style> and data:
# figures need 'unsafe-inline' styles and data: images; scripts come only from /ui/static.
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# A report page: no script, no request; only its own inline styles and data: figures.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

router = APIRouter(include_in_schema=False)


def html_response(html: str, csp: str, *, no_store: bool = False) -> HTMLResponse:
    headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if no_store:
        headers["Cache-Control"] = "no-store"
    return HTMLResponse(html, headers=headers)


# The submit form's help line per hyperparameter (the API schema's description where it has one).
HYPERPARAMETER_HELP = {
    "subclasses": "sub-classes per class S (lelp, random_subclass), or auto to grid-search",
    "beta": "weight of the sub-class term (lelp)",
    "tau": "softmax temperature of the teacher's targets",
    "alpha": "weight of the true labels' loss (0: teacher targets only; auto: cnn 0.5 where >= 90% of the rows "
             "have labels, 0.5 x the labelled share below)",
    "epochs": "empty: enough epochs for the student's step budget, stopping early on the held-out score",
    "learning_rate": "the student's optimizer step size",
    "batch_size": "rows per training step",
    "max_length": "tokens per input (longer texts are cut)",
    "seed": "random seed (splits, initialisation, shuffling)",
    "augment": "teacher-scored variants per training row (0: none)",
    "patience": "epochs without a better validation score before stopping (left at this default: "
                "no early stopping when epochs is set)",
    "gpus": "GPUs for one job (more than 1: the transformer student only)",
}
# Defaults that depend on the student kind: the page swaps them when the kind changes.
KIND_FIELDS = ("tau", "learning_rate", "batch_size", "patience")


def form_spec() -> dict[str, Any]:
    """What the submit form offers and the defaults it shows: from the API schema and the library.

    Every field of ``JobCreate.hyperparameters`` gets an input (``tests/app/test_console_page.py``
    checks none is missing); a field's shown default is the value the library would pick.
    """
    from dataclasses import fields as dataclass_fields

    from app.schemas.jobs import Hyperparameters
    from app.vocabulary import DEFAULT_METHOD, DEFAULT_STUDENT_KIND, DEVICE_CHOICES, METHOD_CHOICES, STUDENT_KINDS
    from lelp.config import (
        AUTO_STUDENT,
        DEFAULT_BETA,
        DEFAULT_MIN_SPEEDUP,
        DEFAULT_SUBCLASSES,
        STUDENT_DEFAULTS,
        DistillConfig,
    )

    library = {f.name: f.default for f in dataclass_fields(DistillConfig)}
    kind_defaults = {kind: {name: STUDENT_DEFAULTS[kind][name] for name in KIND_FIELDS}
                     for kind in STUDENT_KINDS}
    kind_defaults[AUTO_STUDENT] = kind_defaults[DEFAULT_STUDENT_KIND]  # each kind it trains keeps its own
    fixed = {"subclasses": DEFAULT_SUBCLASSES, "beta": DEFAULT_BETA, "alpha": library["alpha"],
             "max_length": library["max_length"], "seed": library["seed"], "augment": library["augment"],
             "gpus": library["gpus"]}
    hyperparameters = []
    for name, field in Hyperparameters.model_fields.items():
        default = kind_defaults[DEFAULT_STUDENT_KIND][name] if name in KIND_FIELDS else fixed.get(name)
        kind = "int" if name in ("epochs", "batch_size", "max_length", "seed", "augment", "patience", "gpus") else (
            "subclasses" if name == "subclasses" else "float")
        placeholder = "auto" if name == "epochs" else ""
        hyperparameters.append({"name": name, "default": default, "type": kind, "placeholder": placeholder,
                                "help": HYPERPARAMETER_HELP.get(name) or field.description or ""})
    return {"methods": list(METHOD_CHOICES), "default_method": DEFAULT_METHOD, "student_kinds": list(STUDENT_KINDS),
            "default_kind": DEFAULT_STUDENT_KIND, "devices": list(DEVICE_CHOICES), "kind_defaults": kind_defaults,
            "hyperparameters": hyperparameters, "auto_kind": AUTO_STUDENT, "default_min_speedup": DEFAULT_MIN_SPEEDUP}


@router.get("/ui")
def console() -> HTMLResponse:
    from app import __version__

    html = templates.get_template("console.html").render(version=__version__, spec=form_spec())
    return html_response(html, CONSOLE_CSP)


@router.get("/")
def root() -> RedirectResponse:
    """A person who opens the server's address lands on the console."""
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui/")
def console_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


def install(app: FastAPI) -> None:
    """Mount the console page, its static files and the offline ``/docs`` on ``app``."""
    from app.ui import api_docs

    app.include_router(router)
    api_docs.install(app)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
