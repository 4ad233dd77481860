"""The OpenAPI document and its Swagger UI page, behind the API key like the rest.

Swagger UI's script, style sheet and icon are served by the service itself, from the
`fastapi-offline` package (it ships Swagger UI's current release and is updated with it), so
that `/docs` works without internet access; they are mounted at `ASSETS_URL`, open to all as
the playground's files are (they hold nothing of the service).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ..deps import ApiKey

__all__ = ["ASSETS_DIR", "ASSETS_URL", "router"]

router = APIRouter(tags=["docs"], dependencies=[ApiKey], include_in_schema=False)

ASSETS_URL = "/docs/static"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title=request.app.title,
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
    )
