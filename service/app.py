"""HTTP layer: parse the request, delegate to the registry, map results and errors to JSON.

`create_app(settings)` builds everything; nothing is loaded at import time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mnist_shared.preprocessing import scale_pixels
from service import schemas
from service.decoding import Limits
from service.errors import BadRequest, ServiceError
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.requests import read_images
from service.settings import BACKENDS, Settings

logger = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed input: not an image, bad JSON, unknown variant or backend.",
        413: "Body, image or image count over the configured limit.",
        415: "Unsupported content type.",
        501: "Backend not installed in this deployment.",
        503: "Models still loading or failed to load.",
    }.items()
}


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def create_app(settings: Settings | None = None, *, load_models: bool = True) -> FastAPI:
    """The service. `load_models=False` leaves the registry empty (for readiness tests)."""
    settings = settings or Settings()
    metrics = Metrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        registry = ModelRegistry(settings, metrics, executor)
        app.state.registry = registry
        loader = asyncio.create_task(registry.load()) if load_models else None
        try:
            yield
        finally:
            if loader is not None:
                await loader
            await registry.close()
            executor.shutdown(wait=True)

    app = FastAPI(
        title="MNIST digit classifier",
        version="1.0.0",
        description="Digit predictions from three CNNs that differ only in their normalization "
        "(group, instance, layer), served from ONNX (or TensorFlow SavedModel).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    _add_error_handlers(app)
    _add_routes(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal error (logged); retry, and report it if it persists."},
            status_code=500,
        )


def _add_routes(app: FastAPI) -> None:
    @app.post(
        "/predict",
        response_model=schemas.VariantPredictions | schemas.AllVariantsPredictions,
        responses={
            200: {"content": {"application/json": {"example": schemas.PREDICTION_EXAMPLE}}},
            **ERROR_RESPONSES,
        },
        openapi_extra={
            "requestBody": {"required": True, "content": schemas.PREDICT_REQUEST_BODIES}
        },
        summary="Classify one or more digit images",
    )
    async def predict(
        request: Request,
        registry: RegistryDep,
        settings: SettingsDep,
        metrics: MetricsDep,
        variant: Annotated[str | None, Query(description="group, instance, layer or all")] = None,
        backend: Annotated[str | None, Query(description="onnx or savedmodel")] = None,
    ) -> dict[str, Any]:
        variant = variant or settings.default_variant
        started = time.perf_counter()
        status = 500
        try:
            backend = _check_choice("backend", backend or settings.default_backend, BACKENDS)
            variants = _variants_for(variant, settings)
            limits = Limits(settings.max_images_per_request, settings.max_image_pixels)
            images = scale_pixels(await read_images(request, settings.max_upload_bytes, limits))
            results = await asyncio.gather(
                *(_predict_variant(registry, name, backend, images) for name in variants)
            )
            metrics.images.labels(variant=variant).inc(len(images) * len(variants))
            status = 200
            if variant != "all":
                return results[0]
            return {
                "variant": "all",
                "backend": backend,
                "results": {r["variant"]: r for r in results},
            }
        except ServiceError as error:
            status = error.status_code
            raise
        finally:
            metrics.requests.labels(variant=variant, status=str(status)).inc()
            metrics.latency.labels(variant=variant).observe(time.perf_counter() - started)

    @app.get("/models", summary="Variants, versions, backends, input spec and test accuracy")
    async def models(registry: RegistryDep) -> dict[str, Any]:
        return {"models": registry.describe()}

    @app.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready", summary="Every configured variant loaded, verified and warmed up")
    async def ready(registry: RegistryDep) -> JSONResponse:
        state = registry.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus(metrics: MetricsDep) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _predict_variant(
    registry: ModelRegistry, variant: str, backend: str, images: np.ndarray
) -> dict[str, Any]:
    manifest, probabilities = await registry.predict(variant, backend, images)
    digits = probabilities.argmax(axis=1)
    return {
        "variant": variant,
        "model_version": manifest.version,
        "backend": backend,
        "predictions": [
            {"digit": int(d), "confidence": float(p[d]), "probabilities": p.tolist()}
            for d, p in zip(digits, probabilities, strict=True)
        ],
    }


def _variants_for(variant: str, settings: Settings) -> list[str]:
    if variant == "all":
        return list(settings.variants)
    return [_check_choice("variant", variant, (*settings.variants, "all"))]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadRequest(f"unknown {name} {value!r}: choose one of {', '.join(choices)}.")
    return value
