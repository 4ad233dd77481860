"""The playground page (app/static/index.html) and its static files: open to all, since the
page itself asks for the API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ...errors import ServiceError

router = APIRouter(tags=["playground"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


class PlaygroundMissing(ServiceError):
    """This installation ships no playground page."""

    status_code = 404


@router.get("/")
async def playground() -> FileResponse:
    """The playground: pick a pipeline, run it, watch the results arrive."""
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        raise PlaygroundMissing("no playground page in this installation")
    return FileResponse(page, media_type="text/html")
