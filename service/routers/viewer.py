"""The web viewer: GET / serves the page, /static/ its script, styles and sample image.

Plain HTML, JS and CSS from ``service/static`` (no build step, nothing from a CDN); the page
talks to the v1 API like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["viewer"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def mount_viewer(app: FastAPI) -> None:
    """Serve the viewer at ``/`` and its assets under ``/static/``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
