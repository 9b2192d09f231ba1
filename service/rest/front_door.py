"""The inference front door: a pure ASGI middleware in front of FastAPI's stack, for the hot path.

- While the inference queue is full it answers inference requests 503 (with `Retry-After`)
  before anything is parsed or routed. Clients that retry at once would otherwise keep the event
  loop busy with shedding alone, and the requests being served would wait for it.
- It serves `POST /predict` itself, with the same handler as the documented FastAPI route
  (`service.rest.routes.predict`) and the same error bodies, but without the router's matching,
  dependency solving and exception middlewares, a large share of the event loop's time per
  request under py-spy (docs/performance-log.md has the figures). Every other path goes
  through FastAPI.
"""

from __future__ import annotations

import logging
import re

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Overloaded, ServiceError
from service.rest.responses import error_response, internal_error_response
from service.rest.routes import predict, query_parameters

logger = logging.getLogger(__name__)

_INFERENCE_PATH = re.compile(r"^/(?:predict|v2/models/([^/]+)(?:/versions/[^/]+)?/infer)$")


class FrontDoor:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"].state.arrivals.count += 1  # what the SIGTERM drain waits on
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFERENCE_PATH.match(scope["path"])
            dataplane = getattr(scope["app"].state, "dataplane", None) if match else None
            if dataplane is not None:
                if dataplane.at_capacity:
                    await _shed(send, dataplane.shed_at_door(match.group(1) or _variant(scope)))
                    return
                if scope["path"] == "/predict":
                    response = await _predict(Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _variant(scope: Scope) -> str | None:
    return query_parameters(scope["query_string"]).get("variant")


async def _shed(send: Send, error: Overloaded) -> None:
    """The 503, written straight to the ASGI connection: under a retry storm every
    microsecond a shed request costs is taken from the requests being served, and a starlette
    Request and Response made each shed half as dear again (docs/performance-log.md)."""
    body = orjson.dumps({"error": error.message})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _predict(request: Request) -> Response:
    """`routes.predict`, its errors mapped as the app's exception handlers map them."""
    try:
        return await predict(request)
    except ServiceError as error:
        return error_response(error)
    except Exception:
        logger.exception("unhandled error on POST /predict")
        return internal_error_response()
