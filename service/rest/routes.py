"""The service's own HTTP routes: `/predict`, `/models`, health and metrics.

Each parses the request, delegates to the data plane and shapes the JSON answer.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter, ValidationError

from service.dataplane.dataplane import DataPlane
from service.dataplane.decoding import ImagePayload, Limits
from service.dataplane.inference import (
    ALL_VARIANTS,
    InferenceAnswer,
    InferenceRequest,
    VariantResult,
)
from service.errors import BadRequest
from service.rest import schemas
from service.rest.body import dropped_on_disconnect, read_payload
from service.rest.dependencies import DataPlaneDep, MetricsDep, RepositoryDep
from service.rest.responses import ERROR_RESPONSES, JSONLineResponse

router = APIRouter()
_JSON = "application/json"
_FLAG = TypeAdapter(bool)


async def predict(request: Request) -> Response:
    """`POST /predict`, served by the front door (`service.rest.front_door`) straight from the
    ASGI scope: FastAPI's routing and dependency solving were a large share of the event
    loop's time per request. The route below only documents it, so it takes no dependencies
    (`create_app` refuses any). Query parameters are read by hand, for the same reason; they
    are documented in `schemas.PREDICT_PARAMETERS`."""
    asked = await infer_from_query(request, parameters=schemas.PREDICT_PARAMETER_NAMES)
    all_variants = asked.variant == ALL_VARIANTS
    return json_response(_predictions(asked.answer, asked.return_input, all_variants))


class QueryAnswer(NamedTuple):
    answer: InferenceAnswer
    variant: str | None
    return_input: bool


# Reads a request's images: (request, max_bytes, max_json_bytes, limits) -> payload.
PayloadReader = Callable[[Request, int, int, Limits], Awaitable[ImagePayload]]


async def infer_from_query(
    request: Request,
    reader: PayloadReader = read_payload,
    *,
    parameters: frozenset[str] = schemas.READ_PARAMETER_NAMES,
) -> QueryAnswer:
    """The data plane's answer to a request shaped like `/predict`'s (and `/read`'s): the
    images in the body, read by `reader`, the choices in the query string, which may name only
    the route's documented `parameters` (`strict` where the route takes it)."""
    dataplane: DataPlane = request.app.state.dataplane
    settings = dataplane.settings
    query = query_parameters(request.scope["query_string"])
    check_parameter_names(query, parameters, request.scope["path"])
    return_input = query_flag(query.get("return_input"), "return_input")
    answer = await dataplane.infer(
        InferenceRequest(
            read_images=functools.partial(
                reader, request, settings.max_upload_bytes, settings.max_json_bytes
            ),
            variant=query.get("variant"),
            version=query.get("version"),
            backend=query.get("backend"),
            precision=functools.partial(query.get, "precision"),
            strict=query_flag(query.get("strict"), "strict"),
            watch_client=functools.partial(dropped_on_disconnect, request),
        )
    )
    return QueryAnswer(answer, query.get("variant"), return_input)


def check_parameter_names(query: dict[str, str], parameters: frozenset[str], path: str) -> None:
    """BadRequest naming a query parameter the route does not take (a misspelt `varient`
    would otherwise be ignored in silence), with the ones it takes."""
    unknown = sorted(set(query) - parameters)
    if unknown:
        raise BadRequest(
            f"invalid request: {path} takes no query parameter {unknown[0]!r}; it takes "
            f"{', '.join(sorted(parameters))}."
        )


router.add_api_route(
    "/predict",
    predict,
    methods=["POST"],
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


def _predictions(answer: InferenceAnswer, return_input: bool, all_variants: bool) -> dict[str, Any]:
    inputs = [png_base64(digit) for digit in answer.digits_seen()] if return_input else None
    answers = [_variant_answer(result, inputs, answer) for result in answer.results]
    if not all_variants:
        return answers[0]
    return {
        "variant": ALL_VARIANTS,
        "backend": answer.backend,
        "results": {entry["variant"]: entry for entry in answers},
    }


@router.get("/models", summary="Variants, versions, backends, input spec and test accuracy")
async def models(repository: RepositoryDep, dataplane: DataPlaneDep) -> dict[str, Any]:
    return {
        "models": repository.describe(),
        "digit_check": dataplane.digit_verdicts.describe(),
        "experiments": dataplane.experiments.describe(),
        "feedback": dataplane.feedback.enabled,
    }


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


def query_flag(value: str | None, name: str) -> bool:
    """A boolean query parameter, spelled as FastAPI would accept it."""
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError:
        raise BadRequest(
            f"invalid request: query.{name}: {value!r} is not a boolean; use true or false."
        ) from None


def json_response(body: dict[str, Any]) -> Response:
    """The answer as JSON, serialized by orjson straight from numpy. Returning a Response skips
    FastAPI's response-model validation (the model documents the schema; tests check it)."""
    # A final newline, so that curl's output does not run into the shell's prompt.
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    return Response(orjson.dumps(body, option=options), media_type=_JSON)


def _variant_answer(
    result: VariantResult, inputs: list[str] | None, answer: InferenceAnswer
) -> dict[str, Any]:
    # float32 numbers, written by orjson in their shortest form (0.998, not 0.99800002574...).
    predictions: list[dict[str, Any]] = [
        {"digit": int(d), "confidence": p[d], "probabilities": p}
        for d, p in zip(result.digits, result.probabilities, strict=True)
    ]
    beside = answer.digits_beside
    for row, prediction in enumerate(predictions):
        add_digit_check(prediction, answer, row)
        if beside is not None and beside[row]:
            prediction["digits_in_picture"] = int(beside[row]) + 1
        if inputs is not None:
            prediction["input"] = inputs[row]
    failures = answer.failures
    for index in sorted(failures):  # in input order, where the unreadable pictures were
        predictions.insert(index, {"error": failures[index]})
    return {
        "variant": result.variant,
        "model_version": result.version,
        "backend": result.backend,
        "precision": result.precision,
        "predictions": predictions,
    }


def add_digit_check(entry: dict[str, Any], answer: InferenceAnswer, row: int) -> None:
    """The digit check's verdict on one row of the answer, where the server has the check."""
    flags = answer.looks_like_digits
    if flags is not None and answer.digit_scores is not None:
        entry["looks_like_digit"] = bool(flags[row])
        entry["digit_score"] = answer.digit_scores[row]


def png_base64(digit: np.ndarray) -> str:
    """The 28x28 image the model saw, as a base64 PNG (how a user debugs a misread photo)."""
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
