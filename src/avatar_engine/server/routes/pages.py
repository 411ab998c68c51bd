"""The pages a browser opens: ``/docs`` (Swagger UI from the files the
``swagger-ui-bundle-v2`` package ships, so the API page works offline; FastAPI's own loads
them from a CDN) and ``/`` (the bundled web client). Neither is in the OpenAPI document."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from avatar_engine.server.errors import error_response


def mount_api_docs(app: FastAPI) -> None:
    """``/docs`` and its assets under ``/docs/assets``."""
    app.mount(
        "/docs/assets",
        StaticFiles(directory=Path(str(swagger_ui_bundle.swagger_ui_path))),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        root = f"{request.scope.get('root_path', '')}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png",
        )


def mount_client(app: FastAPI) -> None:
    """Serve the bundled client (built into the package's ``web`` folder) at ``/``; mounted
    last, since it answers every path the API routes did not take."""
    root = resources.files("avatar_engine") / "web"
    if isinstance(root, Path) and (root / "index.html").is_file():
        app.mount("/", StaticFiles(directory=root, html=True), name="client")
        return

    @app.get("/", include_in_schema=False)
    async def no_client() -> JSONResponse:
        return error_response(
            404,
            "client_not_built",
            "the bundled web client is not in this install (build it with npm, see README)",
        )
