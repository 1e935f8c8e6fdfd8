"""The web viewer: GET / serves the page, /static/ its script, styles and sample image.

Plain HTML, JS and CSS from ``service/static`` (no build step, nothing from a CDN); the page
talks to the v1 API like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["viewer"])


#: Renderers of artifact types beyond app.js's own, one file each: every
#: ``static/renderers/*.js`` is loaded after app.js and calls
#: ``window.Lantern.registerRenderer(type, fn)``, so a new kind of picture is a new file.
RENDERERS_DIR = STATIC_DIR / "renderers"
_APP_SCRIPT = '<script src="/static/app.js"></script>'


def renderer_scripts() -> list[str]:
    """The renderer files' URLs, in name order."""
    if not RENDERERS_DIR.is_dir():
        return []
    return [f"/static/renderers/{p.name}" for p in sorted(RENDERERS_DIR.glob("*.js"))]


@router.get("/", include_in_schema=False)
def index() -> HTMLResponse:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    tags = "".join(f'\n  <script src="{src}"></script>' for src in renderer_scripts())
    return HTMLResponse(
        html.replace(_APP_SCRIPT, _APP_SCRIPT + tags, 1),
        headers={"Cache-Control": "no-cache"},
    )


def mount_viewer(app: FastAPI) -> None:
    """Serve the viewer at ``/`` and its assets under ``/static/``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
