"""The service's own HTTP routes: `/predict`, `/models`, health and metrics.

Each parses the request, delegates to the data plane and shapes the JSON answer.
"""

from __future__ import annotations

import base64
import functools
import io
from typing import Annotated, Any
from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter, ValidationError

from mnist_shared.preprocessing import scale_pixels
from service.dataplane.dataplane import ALL_VARIANTS, DataPlane, VariantResult
from service.dataplane.decoding import Limits
from service.dataplane.tensors import parse_version
from service.errors import BadRequest
from service.metrics import Metrics
from service.rest import schemas
from service.rest.body import decode_payload, dropped_on_disconnect, read_payload
from service.rest.responses import JSONLineResponse

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed input: not an image, bad JSON, unknown variant or backend.",
        404: "Unknown model, or a model version that is not loaded.",
        413: "Body, pixels (per image or per request) or image count over the configured limit.",
        415: "Unsupported content type.",
        422: "The images hold no digit (a blank canvas, a uniform photo): send a picture of one "
        "digit. When only some of a request's images have none, the answer is 200 and each of "
        "those images' entries carries its `error` instead.",
        501: "Backend not installed in this deployment.",
        503: "Models loading, failed or unloaded; or at capacity (then with Retry-After).",
        504: "Not answered within MNIST_REQUEST_TIMEOUT_S; the queued work was dropped.",
    }.items()
}


# `async def`: FastAPI runs plain `def` dependencies in its thread pool, a hop per request.
async def get_dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

router = APIRouter()
_JSON = "application/json"
_FLAG = TypeAdapter(bool)


@router.post(
    "/predict",
    response_model=schemas.VariantPredictions | schemas.AllVariantsPredictions,
    response_model_exclude_none=True,  # `input` only when asked for
    responses={
        200: {"content": {"application/json": {"example": schemas.PREDICTION_EXAMPLE}}},
        **ERROR_RESPONSES,
    },
    openapi_extra={
        "parameters": schemas.PREDICT_PARAMETERS,
        "requestBody": {"required": True, "content": schemas.PREDICT_REQUEST_BODIES},
    },
    summary="Classify one or more digit images",
)
async def predict(request: Request) -> Response:
    # Query parameters are read by hand, not declared: FastAPI's parameter solving was a fifth
    # of the event loop's time per request (py-spy). They are documented in `PREDICT_PARAMETERS`.
    dataplane: DataPlane = request.app.state.dataplane
    query = query_parameters(request.scope["query_string"])
    variant, backend = query.get("variant"), query.get("backend")
    return_input = _query_flag(query.get("return_input"), "return_input")
    version = parse_version(query.get("version"))
    settings = dataplane.settings
    async with dataplane.request(variant or dataplane.default_variant):
        chosen_backend = dataplane.choose_backend(backend)
        variants = dataplane.choose_variants(variant)
        limits = Limits.of(settings)
        payload = await read_payload(
            request, settings.max_upload_bytes, settings.max_json_bytes, limits
        )
        async with dataplane.admitted(payload.count * len(variants)):  # else 503 before decoding
            decoded = await decode_payload(payload, limits)
            async with dropped_on_disconnect(request):
                results = await dataplane.infer(
                    variants, chosen_backend, scale_pixels(decoded.digits), version
                )
    inputs = [_png_base64(digit) for digit in decoded.digits] if return_input else None
    answers = [_variant_answer(result, inputs, decoded.failures) for result in results]
    if variant != ALL_VARIANTS:
        return _json(answers[0])
    return _json(
        {
            "variant": ALL_VARIANTS,
            "backend": chosen_backend,
            "results": {answer["variant"]: answer for answer in answers},
        }
    )


@router.get("/models", summary="Variants, versions, backends, input spec and test accuracy")
async def models(dataplane: DataPlaneDep) -> dict[str, Any]:
    return {"models": dataplane.describe()}


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", summary="Every served variant loaded, verified and warmed up")
async def ready(dataplane: DataPlaneDep) -> JSONResponse:
    state = dataplane.readiness()
    return JSONLineResponse(state, status_code=200 if state["ready"] else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@functools.lru_cache(maxsize=256)
def query_parameters(query_string: bytes) -> dict[str, str]:
    """A query string's parameters, the last value of a repeated one (as Starlette's
    `request.query_params.get`). Cached: clients send the same few query strings again and
    again. Read only: the dict is shared between requests."""
    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


def _query_flag(value: str | None, name: str) -> bool:
    """A boolean query parameter, spelled as FastAPI would accept it."""
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError:
        raise BadRequest(
            f"invalid request: query.{name}: {value!r} is not a boolean; use true or false."
        ) from None


def _json(body: dict[str, Any]) -> Response:
    """The answer as JSON, serialized by orjson straight from numpy. Returning a Response skips
    FastAPI's response-model validation (the model documents the schema; tests check it)."""
    # A final newline, so that curl's output does not run into the shell's prompt.
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return Response(orjson.dumps(body, option=options), media_type=_JSON)


def _variant_answer(
    result: VariantResult, inputs: list[str] | None, failures: dict[int, str]
) -> dict[str, Any]:
    # float32 numbers, written by orjson in their shortest form (0.998, not 0.99800002574...).
    predictions: list[dict[str, Any]] = [
        {"digit": int(d), "confidence": p[d], "probabilities": p}
        for d, p in zip(result.digits, result.probabilities, strict=True)
    ]
    if inputs is not None:
        for prediction, image in zip(predictions, inputs, strict=True):
            prediction["input"] = image
    for index in sorted(failures):  # in input order, where the unreadable pictures were
        predictions.insert(index, {"error": failures[index]})
    return {
        "variant": result.variant,
        "model_version": result.version,
        "backend": result.backend,
        "predictions": predictions,
    }


def _png_base64(digit: np.ndarray) -> str:
    """The 28x28 image the model saw, as a base64 PNG (how a user debugs a misread photo)."""
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
