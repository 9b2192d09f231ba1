"""The model-repository extension of the Open Inference Protocol (the paths Triton, KServe and
MLServer use): list every model version with its state, load, unload.

These change what the service serves, so when MNIST_ADMIN_TOKEN is set they require
`Authorization: Bearer <token>` (401 without one, 403 with another; compared in constant time).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request

from service.errors import Forbidden, Unauthorized
from service.routes import ERROR_RESPONSES, DataPlaneDep
from service.v2_rest import ModelName


async def require_admin(request: Request) -> None:
    token = request.app.state.settings.admin_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(
            "this endpoint requires the header Authorization: Bearer <MNIST_ADMIN_TOKEN>."
        )
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise Forbidden("the bearer token does not match MNIST_ADMIN_TOKEN.")


router = APIRouter(
    prefix="/v2/repository",
    tags=["Model repository"],
    dependencies=[Depends(require_admin)],
    responses={
        **ERROR_RESPONSES,
        401: {"description": "MNIST_ADMIN_TOKEN is set and no bearer token was sent."},
        403: {"description": "The bearer token is not MNIST_ADMIN_TOKEN."},
        409: {"description": "Unload with several uvicorn workers (it would reach only one)."},
    },
)


@router.post("/index", summary="Every model version on disk, with its state")
async def index(dataplane: DataPlaneDep) -> list[dict[str, Any]]:
    return dataplane.repository_index()


@router.post("/models/{model}/load", summary="Rescan and serve the newest version allowed")
async def load(dataplane: DataPlaneDep, model: ModelName) -> dict[str, Any]:
    await dataplane.load_model(model)
    return {"name": model, "versions": dataplane.serving_versions(model)}


@router.post("/models/{model}/unload", summary="Stop serving the model")
async def unload(dataplane: DataPlaneDep, model: ModelName) -> dict[str, Any]:
    await dataplane.unload_model(model)
    return {"name": model, "versions": []}
