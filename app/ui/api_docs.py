"""``/docs``: Swagger UI served by the service itself, from the ``swagger-ui-bundle-v2`` package.

FastAPI's default ``/docs`` page loads its script and stylesheet from a CDN, so on a machine
without internet it is a blank page. Here the same page points at ``/docs/static``, a copy of
Swagger UI that ships inside a Python package (module ``swagger_ui_bundle``, installed with the
``service`` extra): the page needs nothing but this server. ReDoc (also CDN-only) is switched off.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"
log = logging.getLogger(__name__)


def swagger_ui_dir() -> Path | None:
    """The folder holding ``swagger-ui-bundle.js`` and ``swagger-ui.css``; None without the package."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # an install without the service extra's docs package: the API still runs
        return None
    return Path(swagger_ui_path)


def install(app: FastAPI) -> None:
    """Serve ``/docs`` (create the app with ``docs_url=None``) and its assets from this server."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"

    assets = swagger_ui_dir()

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        if assets is None:
            log.warning("/docs asked for, but swagger-ui-bundle-v2 is not installed")
            return HTMLResponse("<!doctype html><title>API docs</title><p>Swagger UI is not installed on this "
                                "server (<code>pip install swagger-ui-bundle-v2</code>); the API is described "
                                f"by <a href=\"{openapi_url}\">{openapi_url}</a>.</p>", status_code=503)
        return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC}/favicon-32x32.png")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    if assets is not None:
        app.mount(STATIC, StaticFiles(directory=assets), name="swagger-ui")
