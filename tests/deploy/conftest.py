"""The deployment test's stack: both images built, the Compose file brought up as a user brings it
up, in a checkout that uid 1000 owns. Run by `make test-deploy` (`pytest -m deploy tests/deploy`)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.containers import Engine, EngineUnavailable, build_images, engine
from devtools.servers import free_port

# A user's checkout, owned by the uid the trainer runs as: Compose's MNIST_UID default as root
# (CI), else whoever runs the test (a laptop with Docker).
USER_ID = 1000 if os.geteuid() == 0 else os.getuid()
READY_TIMEOUT_S = 180.0


@dataclass
class Stack:
    """The Compose project under test and how to reach it."""

    engine: Engine
    checkout: Path
    variables: dict[str, str]
    http_port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def compose(self, *args: str, check: bool = True, timeout: float = 600):
        return self.engine.compose(
            self.checkout, *args, check=check, timeout=timeout, **self.variables
        )

    def container(self) -> str:
        """The api service's container id."""
        return self.compose("ps", "-q", "api").stdout.strip()

    def inspect(self, template: str) -> str:
        return self.engine.run("inspect", "--format", template, self.container()).stdout.strip()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        logs = self.compose("logs", "--tail", "50", "api", check=False).stdout
        raise AssertionError(f"{self.url}/health/ready not 200 within {timeout_s:.0f} s:\n{logs}")


@pytest.fixture(scope="session")
def container_engine() -> Iterator[Engine]:
    """Skipped only where no engine can run; `.ci/run` sets MNIST_DEPLOY_REQUIRED=1 (CI machines
    run podman), where the same reason fails the run instead."""
    try:
        with engine() as running:
            build_images(running)  # layers cached: seconds when `make test-deploy` just built
            yield running
    except EngineUnavailable as error:
        if os.environ.get("MNIST_DEPLOY_REQUIRED") == "1":
            pytest.fail(f"MNIST_DEPLOY_REQUIRED=1, but {error}")
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def user_checkout(tmp_path_factory) -> Path:
    """What Compose reads from a checkout (the Compose file, models/, runs/), owned by uid 1000."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copy(REPO_ROOT / "docker-compose.yml", root)
    shutil.copytree(committed_models(), root / "models")
    shutil.copytree(REPO_ROOT / "runs", root / "runs")
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, USER_ID, USER_ID, follow_symlinks=False)
    return root


@pytest.fixture(scope="module")
def stack(container_engine: Engine, user_checkout: Path) -> Iterator[Stack]:
    """`docker compose up -d --no-build api` with the ports moved by the file's own variables;
    taken down at the end whatever happened (the last test takes it down itself)."""
    http_port, grpc_port = free_port(), free_port()
    variables = {
        "COMPOSE_PROJECT_NAME": f"mnistdeploy{os.getpid()}",
        "MNIST_PUBLISH_PORTS": str(http_port),
        "MNIST_PUBLISH_GRPC_PORTS": str(grpc_port),
        "MNIST_MODEL_POLL_S": "1",
        # The trainer's /data; the train profile's test skips without MNIST_DATA_DIR.
        "MNIST_DATA_DIR": os.environ.get("MNIST_DATA_DIR") or str(user_checkout / "data"),
        "MNIST_UID": str(USER_ID),
        "MNIST_GID": str(USER_ID if os.geteuid() == 0 else os.getgid()),
    }
    running = Stack(container_engine, user_checkout, variables, http_port, grpc_port)
    running.compose("up", "-d", "--no-build", "api")
    try:
        running.wait_ready()
        yield running
    finally:
        running.compose("down", "--remove-orphans", check=False)


def predict_the_example_seven(url: str) -> dict:
    """POST examples/canvas-7.png to /predict?variant=group; the answer, checked to be a 7."""
    answer = httpx.post(
        f"{url}/predict?variant=group",
        content=(REPO_ROOT / "examples" / "canvas-7.png").read_bytes(),
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["digit"] == 7, answer.text
    return answer.json()


def models_listing(stack: Stack) -> dict[str, dict]:
    """GET /models by variant."""
    answer = httpx.get(f"{stack.url}/models", timeout=10)
    assert answer.status_code == 200, answer.text
    return {model["variant"]: model for model in json.loads(answer.text)["models"]}
