"""The web console at ``/ui`` and the service's HTML templates (Jinja2, static files beside them).

The console is one page of plain HTML and a little JavaScript over the JSON API: no build
step, nothing from a CDN. The API key lives in the browser tab's ``sessionStorage`` and is
sent as the ``Authorization`` header; it never appears in a URL.
"""

from __future__ import annotations

from pathlib import Path

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


@router.get("/ui")
def console() -> HTMLResponse:
    from app import __version__

    return html_response(templates.get_template("console.html").render(version=__version__), CONSOLE_CSP)


@router.get("/ui/")
def console_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


def install(app: FastAPI) -> None:
    """Mount the console page and its static files on ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
