"""``/docs``: Swagger UI served by the service itself, from the ``swagger-ui-bundle-v2`` package.

FastAPI's default ``/docs`` page loads its script and stylesheet from a CDN, so on a machine
without internet it is a blank page. Here the same page points at ``/docs/static``, a copy of
Swagger UI that ships inside a Python package (module ``swagger_ui_bundle``, installed with the
``service`` extra): the page needs nothing but this server. ReDoc (also CDN-only) is switched off.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"


def swagger_ui_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js`` and ``swagger-ui.css``."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def install(app: FastAPI) -> None:
    """Serve ``/docs`` (create the app with ``docs_url=None``) and its assets from this server."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC}/favicon-32x32.png")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount(STATIC, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")
