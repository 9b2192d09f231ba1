"""The Open Inference Protocol's REST API (`/v2/...`) with the binary tensor data extension.

The inference route hands the body's parsing to `v2_body.InferenceBody` (read when the data plane
asks for the images), calls the data plane and writes the protocol's answer, JSON or binary.
Errors are `{"error": ...}` with 400 / 404 / 503 like every other route.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.dataplane.inference import InferenceRequest, parse_version
from service.dataplane.tensors import Tensor, output_tensors, raw_bytes
from service.errors import NotReady
from service.rest.body import dropped_on_disconnect
from service.rest.dependencies import DataPlaneDep, ModelName
from service.rest.responses import ERROR_RESPONSES
from service.rest.v2_body import InferenceBody, InferenceRequestJSON

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"])


@router.get("", summary="Server metadata")
async def server_metadata(dataplane: DataPlaneDep) -> dict[str, Any]:
    return dataplane.server_metadata()


@router.get("/health/live", summary="The server is live")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Every served model is ready", responses=ERROR_RESPONSES)
async def server_ready(dataplane: DataPlaneDep) -> dict[str, bool]:
    if not dataplane.ready():
        raise NotReady(f"not ready: {json.dumps(dataplane.readiness())}")
    return {"ready": True}


@router.get("/models/{model}", summary="Model metadata", responses=ERROR_RESPONSES)
@router.get("/models/{model}/versions/{version}", include_in_schema=False)
async def model_metadata(
    dataplane: DataPlaneDep, model: ModelName, version: str | None = None
) -> dict[str, Any]:
    return dataplane.model_metadata(model, parse_version(version))


@router.get("/models/{model}/ready", summary="The model is ready", responses=ERROR_RESPONSES)
@router.get("/models/{model}/versions/{version}/ready", include_in_schema=False)
async def model_ready(
    dataplane: DataPlaneDep, model: ModelName, version: str | None = None
) -> dict[str, Any]:
    if not dataplane.model_ready(model, parse_version(version)):
        raise NotReady(
            f"model {model!r} is not ready: {dataplane.readiness()['errors'] or 'loading'}"
        )
    return {"name": model, "ready": True}


@router.post(
    "/models/{model}/infer",
    summary="Inference (JSON or binary tensors)",
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": InferenceRequestJSON.model_json_schema()}},
        }
    },
)
@router.post("/models/{model}/versions/{version}/infer", include_in_schema=False)
async def model_infer(
    request: Request, dataplane: DataPlaneDep, model: ModelName, version: str | None = None
) -> Response:
    body = InferenceBody(
        request, dataplane.settings.max_upload_bytes, dataplane.settings.max_json_bytes
    )
    answer = await dataplane.infer(
        InferenceRequest(
            read_images=body.read_images,
            model=model,
            version=version,
            whole=True,
            precision=body.precision,
            watch_client=functools.partial(dropped_on_disconnect, request),
        )
    )
    inference = body.inference
    assert inference is not None  # the data plane read the images
    (result,) = answer.results
    reply: dict[str, Any] = {"model_name": model, "model_version": str(result.version)}
    if inference.id is not None:
        reply["id"] = inference.id
    # What the service knows of the answer, never the client's parameters echoed back (any
    # key of any size would be copied into every answer).
    reply["parameters"] = {"precision": result.precision}
    outputs = output_tensors(result, body.requested_outputs, answer)
    return _response(reply, outputs, body.binary_outputs)


# -- response ---------------------------------------------------------------------------------


def _response(answer: dict[str, Any], outputs: list[Tensor], binary: dict[str, bool]) -> Response:
    chunks, described = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if binary.get(tensor.name, binary["*"]):
            raw = raw_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = np.asarray(tensor.data).ravel().tolist()
        described.append(entry)
    header = json.dumps(answer | {"outputs": described}, separators=(",", ":")).encode()
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
