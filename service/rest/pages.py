"""The draw-a-digit page (`/`): plain HTML/CSS/JS from `service/static`, no build step, nothing
loaded from outside the service, so it works offline and behind a firewall. (`/docs` and
`/redoc` are offline too: `create_app` builds the app with `fastapi_offline.FastAPIOffline`.)

The page is served with a Content-Security-Policy allowing exactly what it uses: its own script
and style sheet, `fetch` to the service, and the 28x28 preview as a `data:` image; it has no
inline script or style. `SecurityHeaders` adds nosniff, no framing and no referrer to every answer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def add_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP}
        )


class SecurityHeaders:
    """Pure ASGI middleware (no Request object: it also wraps the `/predict` hot path):
    SECURITY_HEADERS on every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
