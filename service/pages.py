"""The draw-a-digit page (`/`): plain HTML/CSS/JS from `service/static`, no build step, nothing
loaded from outside the service, so it works offline and behind a firewall. (`/docs` and
`/redoc` are offline too: `create_app` builds the app with `fastapi_offline.FastAPIOffline`.)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def add_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")
