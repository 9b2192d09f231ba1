"""The inference front door: a pure ASGI middleware in front of FastAPI's stack, for the hot path.

- While the inference queue is full it answers inference requests 503 (with `Retry-After`)
  before anything is parsed or routed. Clients that retry at once would otherwise keep the event
  loop busy with shedding alone, and the requests being served would wait for it.
- It serves `POST /predict`, `POST /read` and the Open Inference Protocol's `POST
  /v2/models/{model}[/versions/{version}]/infer` itself (with the error bodies of the app's
  exception handlers) without the router's matching, dependency solving and exception
  middlewares, a large share of the event loop's time per request under py-spy (about 250 us
  of CPU a `/v2` request: docs/performance-log.md has the figures). Every other path goes
  through FastAPI, whose routes still document these.

Which paths are inference is read from the routes FastAPI serves (`inference_routes`: those
whose endpoint is in `INFERENCE_ENDPOINTS`): a new inference route is shed as soon as it is
listed there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import Overloaded, ServiceError
from service.rest.dependencies import get_dataplane
from service.rest.read import read
from service.rest.responses import error_response, internal_error_response
from service.rest.routes import predict, query_parameters
from service.rest.v2 import model_infer

logger = logging.getLogger(__name__)

Endpoint = Callable[..., Awaitable[Response]]
INFERENCE_ENDPOINTS: tuple[Endpoint, ...] = (predict, read, model_infer)
# How the door calls each endpoint it serves: with the request, and what FastAPI would have
# given it (the path's parameters; the data plane, the one dependency the door solves).
DoorCall = Callable[[Request, "re.Match[str]"], Awaitable[Response]]


async def _model_infer(request: Request, path: re.Match[str]) -> Response:
    parameters = path.groupdict()
    dataplane = await get_dataplane(request)
    return await model_infer(request, dataplane, parameters["model"], parameters.get("version"))


SERVED_HERE: dict[Endpoint, DoorCall] = {
    predict: lambda request, _path: predict(request),
    read: lambda request, _path: read(request),
    model_infer: _model_infer,
}
SOLVED_HERE = {get_dataplane}  # the only dependency an endpoint served here may declare


InferenceRoutes = list[tuple[re.Pattern[str], "Endpoint"]]


class FrontDoor:
    def __init__(self, app: ASGIApp, inference: InferenceRoutes) -> None:
        self.app = app
        self._inference = inference

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"].state.arrivals.count += 1  # what the SIGTERM drain waits on
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self._route(scope["path"])
            dataplane = getattr(scope["app"].state, "dataplane", None) if route else None
            if route is not None and dataplane is not None:
                match, endpoint = route
                if dataplane.at_capacity:
                    model = match.groupdict().get("model") or _variant(scope)
                    await _shed(send, dataplane.shed_at_door(model))
                    return
                if endpoint in SERVED_HERE:
                    call = SERVED_HERE[endpoint]
                    response = await _serve(call, Request(scope, receive), match)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _route(self, path: str) -> tuple[re.Match[str], Endpoint] | None:
        for path_regex, endpoint in self._inference:
            if (match := path_regex.match(path)) is not None:
                return match, endpoint
        return None


def inference_routes(routes: Sequence[BaseRoute]) -> InferenceRoutes:
    """(path pattern, endpoint) of the app's inference routes. The endpoints served here get
    none of FastAPI's dependency solving but the data plane's: one that declares another
    dependency is refused."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute) and route.endpoint in INFERENCE_ENDPOINTS:
            declared = {dependency.call for dependency in route.dependant.dependencies}
            if route.endpoint in SERVED_HERE and declared - SOLVED_HERE:
                raise RuntimeError(
                    f"{route.path} is served by the front door, which solves no FastAPI "
                    "dependency but the data plane: read what it needs from the request instead."
                )
            found.append((route.path_regex, route.endpoint))
    return found


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


async def _serve(call: DoorCall, request: Request, path: re.Match[str]) -> Response:
    """The endpoint's answer, its errors mapped as the app's exception handlers map them."""
    try:
        return await call(request, path)
    except ServiceError as error:
        return error_response(error)
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error_response()
