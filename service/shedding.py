"""Load shedding at the door: a pure ASGI middleware that answers inference requests 503 while
the inference queue is full, before FastAPI parses or routes anything.

A shed request answered by the route would cost a few hundred microseconds of the event loop;
clients that retry at once (ignoring Retry-After) then keep the loop busy with shedding alone and
the requests being served wait for it. Answered here it costs a fraction of that.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

_INFERENCE_PATH = re.compile(r"^/(?:predict|v2/models/([^/]+)(?:/versions/[^/]+)?/infer)$")


class ShedWhenFull:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFERENCE_PATH.match(scope["path"])
            dataplane = getattr(scope["app"].state, "dataplane", None) if match else None
            if dataplane is not None:
                error = dataplane.shed_at_door(match.group(1) or _variant(scope))
                if error is not None:
                    await _answer(send, error.status_code, error.message, error.headers)
                    return
        await self.app(scope, receive, send)


def _variant(scope: Scope) -> str | None:
    values = parse_qs(scope["query_string"].decode("latin-1")).get("variant")
    return values[0] if values else None


async def _answer(send: Send, status: int, message: str, headers: dict[str, str] | None) -> None:
    body = orjson.dumps({"error": message})
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
