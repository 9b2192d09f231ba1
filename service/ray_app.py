"""The service on Ray Serve: the same FastAPI app in every replica, so every route, the
micro-batching inside each replica, readiness after warm-up and the metrics behave as in the
plain service. Ray adds replicas, routing through its proxy, health checks and autoscaling.

    ray start --head
    serve deploy deploy/ray/serve_config.yaml        # import_path: service.ray_app:app

Each replica builds the app from its own MNIST_* variables (the config's `runtime_env`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import FastAPI
from ray import serve

from service.app import create_app
from service.settings import Settings

# Ray's workers do not run in the directory `serve deploy` was called from: a relative
# MNIST_MODELS_DIR is taken from the checkout this package is installed from (`pip install -e`).
_CHECKOUT = Path(__file__).resolve().parent.parent
_FIRST_LOAD_TIMEOUT_S = 120.0


def build_app() -> FastAPI:
    """Evaluated on each replica when it starts."""
    models_dir = Path(os.environ.get("MNIST_MODELS_DIR", "models"))
    if not models_dir.is_absolute():
        os.environ["MNIST_MODELS_DIR"] = str(_CHECKOUT / models_dir)
    os.environ.setdefault("MNIST_GRPC_PORT", "0")  # replicas share a node's ports
    return create_app(Settings())


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
    health_check_timeout_s=_FIRST_LOAD_TIMEOUT_S,
)
@serve.ingress(build_app)
class MnistService:
    async def check_health(self) -> None:
        """Ray's health check: a replica whose models are not loaded (after its first load)
        fails it and is replaced. Ray holds a new replica back until this first passes."""
        dataplane = self.app.state.dataplane  # type: ignore[attr-defined]
        waited = 0.0
        while dataplane.readiness()["loading"] and waited < _FIRST_LOAD_TIMEOUT_S:
            await asyncio.sleep(0.1)
            waited += 0.1
        if not dataplane.ready():
            raise RuntimeError(f"models not loaded: {dataplane.readiness()['errors']}")


app = MnistService.bind()
