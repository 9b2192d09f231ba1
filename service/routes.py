"""HTTP routes: parse the request, delegate to the registry, shape the JSON answer."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mnist_shared.preprocessing import scale_pixels
from service import schemas
from service.decoding import Limits
from service.errors import BadRequest, ServiceError
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.requests import read_images
from service.settings import BACKENDS, Settings

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

router = APIRouter()


@router.post(
    "/predict",
    response_model=schemas.VariantPredictions | schemas.AllVariantsPredictions,
    responses={
        200: {"content": {"application/json": {"example": schemas.PREDICTION_EXAMPLE}}},
        **ERROR_RESPONSES,
    },
    openapi_extra={"requestBody": {"required": True, "content": schemas.PREDICT_REQUEST_BODIES}},
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
    started, status = time.perf_counter(), 500
    try:
        backend = _check_choice("backend", backend or settings.default_backend, BACKENDS)
        variants = _variants_for(variant, settings)
        limits = Limits(settings.max_images_per_request, settings.max_image_pixels)
        with request.app.state.in_flight:  # tells the batchers whether company is coming
            images = scale_pixels(await read_images(request, settings.max_upload_bytes, limits))
            results = await asyncio.gather(
                *(_predict_variant(registry, name, backend, images) for name in variants)
            )
        metrics.images.labels(variant=variant).inc(len(images) * len(variants))
        status = 200
        if variant != "all":
            return results[0]
        return {"variant": "all", "backend": backend, "results": {r["variant"]: r for r in results}}
    except ServiceError as error:
        status = error.status_code
        raise
    finally:
        metrics.requests.labels(variant=variant, status=str(status)).inc()
        metrics.latency.labels(variant=variant).observe(time.perf_counter() - started)


@router.get("/models", summary="Variants, versions, backends, input spec and test accuracy")
async def models(registry: RegistryDep) -> dict[str, Any]:
    return {"models": registry.describe()}


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", summary="Every configured variant loaded, verified and warmed up")
async def ready(registry: RegistryDep) -> JSONResponse:
    state = registry.readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics")
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
