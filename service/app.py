"""The application factory: settings, metrics registry, model registry, data plane, routes,
error mapping.

`create_app(settings)` builds everything; nothing is loaded at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from mnist_shared.digit_check import CHECK_DIR_NAME
from service import __version__
from service.dataplane.dataplane import DataPlane
from service.draining import Arrivals, drain_on_sigterm
from service.errors import ServiceError
from service.loop_lag import watch_loop_lag
from service.memory import return_large_blocks
from service.metrics import MULTIPROCESS_DIR, Metrics
from service.repository.handlers import RepositoryHandlers
from service.repository.registry import ModelRegistry
from service.rest.feedback import router as feedback_router
from service.rest.front_door import FrontDoor, inference_routes
from service.rest.pages import SecurityHeaders, add_pages
from service.rest.read import router as read_router
from service.rest.responses import JSONLineResponse, error_response, internal_error_response
from service.rest.routes import router
from service.rest.v2 import router as v2_router
from service.rest.v2_repository import router as v2_repository_router
from service.runtime.digit_check import DigitCheck, DigitCheckUnavailable, load_digit_check
from service.runtime.in_flight import InFlight, InFlightBoard
from service.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, load_models: bool = True) -> FastAPI:
    """The service. `load_models=False` leaves the registry empty (for readiness tests)."""
    settings = settings or Settings()
    metrics = Metrics(CollectorRegistry())
    lifespan = functools.partial(
        _lifespan, settings=settings, metrics=metrics, load_models=load_models
    )
    app = FastAPIOffline(  # FastAPI with /docs and /redoc assets served locally
        title="MNIST digit classifier",
        version=__version__,
        description="Digit predictions from three CNNs that differ only in their normalization "
        "(group, instance, layer), served from ONNX (or TensorFlow SavedModel).",
        lifespan=lifespan,
        default_response_class=JSONLineResponse,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.arrivals = Arrivals()  # counted by the front door, read by the SIGTERM drain
    _add_error_handlers(app)
    app.include_router(router)
    app.include_router(read_router)
    app.include_router(feedback_router)
    app.include_router(v2_router)
    app.include_router(v2_repository_router)
    add_pages(app)
    _add_middleware(app, settings)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Each middleware added goes outside the ones before. The front door reads which routes
    are inference from the routers' own routes (and refuses a dependency on one it serves). A
    Host not in MNIST_ALLOWED_HOSTS gets 400 (DNS rebinding) before the front door; every
    answer, that 400 included, gets the security headers."""
    app.add_middleware(
        FrontDoor,
        inference=inference_routes([*router.routes, *read_router.routes, *v2_router.routes]),
    )
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts, www_redirect=False
    )
    app.add_middleware(SecurityHeaders)


@asynccontextmanager
async def _lifespan(
    app: FastAPI, *, settings: Settings, metrics: Metrics, load_models: bool
) -> AsyncIterator[None]:
    """Everything the app runs, built at start and closed at the end, nothing at import."""
    return_large_blocks()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    in_flight = _in_flight(settings)
    digit_check = _digit_check(settings, executor)
    folded = digit_check.model if isinstance(digit_check, DigitCheck) else None
    registry = ModelRegistry(settings, metrics, executor, in_flight, folded)
    app.state.registry = registry
    app.state.dataplane = DataPlane(settings, registry, metrics, in_flight, digit_check)
    app.state.repository = RepositoryHandlers(registry)
    loader = await _start_loading(registry, settings) if load_models else None
    grpc_server = await _start_grpc(app.state.dataplane, settings)
    drain_on_sigterm(
        app.state.dataplane,
        app.state.arrivals,
        settings.shutdown_grace_s,
        also_stop=grpc_server.stop if grpc_server is not None else None,
    )
    lag_watch = asyncio.create_task(watch_loop_lag(metrics.loop_lag.observe))
    try:
        yield
    finally:
        lag_watch.cancel()
        await app.state.dataplane.experiments.close()
        if grpc_server is not None:  # after SIGTERM: stopping since the signal, within its grace
            await grpc_server.stop(grace_s=settings.shutdown_grace_s)
        if loader is not None:
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
        await registry.close()
        executor.shutdown(wait=True)
        in_flight.close()
        metrics.close()


async def _start_loading(registry: ModelRegistry, settings: Settings) -> asyncio.Task[None]:
    """The models loading in the background (awaited first with several workers)."""
    loader = asyncio.create_task(registry.start())
    # Python's full garbage collections walk every object the process holds (the libraries,
    # the models' sessions) holding the GIL the event loop needs: frozen once loaded, they are
    # skipped (docs/design.md), and a collection walks what requests made.
    loader.add_done_callback(lambda _: gc.freeze())
    if settings.workers > 1:
        # Workers share one listening socket: a worker that accepted before its models loaded
        # would answer 503 while its siblings are ready. Accept only once loaded.
        await asyncio.shield(loader)
    return loader


def _digit_check(settings: Settings, executor: ThreadPoolExecutor) -> DigitCheck | str:
    """The digit check in <models_dir>/digit_check, or why there is none (logged)."""
    if not settings.digit_check:
        return "MNIST_DIGIT_CHECK=false"
    try:
        return load_digit_check(settings.models_dir / CHECK_DIR_NAME, executor)
    except DigitCheckUnavailable as error:
        logger.warning("serving without the digit check: %s", error)
        return str(error)


def _in_flight(settings: Settings) -> InFlight:
    """This worker's in-flight count, published on the workers' board when there are several
    (their shared directory is set by `python -m service` before they start)."""
    shared = os.environ.get(MULTIPROCESS_DIR)
    if settings.workers > 1 and shared:
        return InFlight(InFlightBoard(Path(shared)))
    return InFlight()


async def _start_grpc(dataplane: DataPlane, settings: Settings) -> Any:
    """The gRPC server on MNIST_GRPC_PORT, unless that is 0."""
    if not settings.grpc_port:
        return None
    from service.grpc.server import GrpcServer

    server = GrpcServer(dataplane, settings.host, settings.grpc_port, settings.max_upload_bytes)
    await server.start()
    return server


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Unknown paths and wrong methods answer like every other error: {"error": ...}."""
        if error.status_code == 404:
            message = f"no such path {request.url.path}: the API is listed at /docs."
        elif error.status_code == 405:
            allowed = error.headers.get("Allow", "") if error.headers else ""
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}."
        else:
            message = str(error.detail)
        return JSONLineResponse(
            {"error": message}, status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return JSONLineResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error_response()
