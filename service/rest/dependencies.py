"""What the REST routes get injected: the app's data plane, repository handlers and metrics,
as `Annotated` aliases, and the path parameter naming a model."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.dataplane.dataplane import DataPlane
from service.metrics import Metrics
from service.repository.handlers import RepositoryHandlers


# `async def`: FastAPI runs plain `def` dependencies in its thread pool, a hop per request.
async def get_dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


async def get_repository(request: Request) -> RepositoryHandlers:
    return request.app.state.repository


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
RepositoryDep = Annotated[RepositoryHandlers, Depends(get_repository)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ModelName = Annotated[str, Path(description="The variant: group, instance or layer.")]
