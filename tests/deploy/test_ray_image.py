"""The Ray variant of the image (`--build-arg WITH_RAY=1`, deploy/kuberay's image) serving through
Ray Serve in its container, started as KubeRay starts a head: `ray start --head --block`, then the
RayService's own serveConfigV2 deployed through the head's dashboard (`serve deploy`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devtools import REPO_ROOT
from devtools.containers import RAY_IMAGE, Engine
from devtools.servers import free_port
from tests.deploy.conftest import predict_the_example_seven

pytestmark = pytest.mark.deploy

RAY_SERVICE = REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml"
CONFIG_IN_CONTAINER = "/tmp/serve.yaml"
START_TIMEOUT_S = 300.0


def _serve_config(directory: Path) -> Path:
    """serveConfigV2 as KubeRay deploys it, with the proxy on all interfaces (KubeRay's own
    setting) so that the published port reaches it."""
    manifest = yaml.safe_load(RAY_SERVICE.read_text())
    applications = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    path = directory / "serve.yaml"
    path.write_text(yaml.safe_dump({"http_options": {"host": "0.0.0.0"}, **applications}))
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def ray_head(container_engine: Engine, tmp_path_factory) -> Iterator[tuple[Engine, str, str]]:
    """(engine, container name, URL of Ray's proxy) of a head running the application."""
    config, port = _serve_config(tmp_path_factory.mktemp("ray")), free_port()
    name = f"mnist-ray-{os.getpid()}"
    container_engine.run(
        *("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "--shm-size", "512m"),
        *("-v", f"{config}:{CONFIG_IN_CONTAINER}:ro", RAY_IMAGE),
        *("ray", "start", "--head", "--block", "--num-cpus=2", "--disable-usage-stats"),
    )
    try:
        deploy = ("exec", name, "serve", "deploy", CONFIG_IN_CONTAINER)
        _wait(lambda: container_engine.run(*deploy, check=False).returncode == 0, "serve deploy")
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _ready(url), "readiness through Ray's proxy")
        yield container_engine, name, url
    finally:
        container_engine.run("kill", name, check=False)  # SIGKILL: nothing here to drain
        container_engine.run("rm", "-f", name, check=False)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {START_TIMEOUT_S:.0f} s"
        time.sleep(1)


def test_the_ray_image_answers_through_ray_serve(ray_head):
    _, _, url = ray_head
    predict_the_example_seven(url)


def test_the_rayservice_replicas_run(ray_head):
    engine, name, _ = ray_head
    status = yaml.safe_load(engine.run("exec", name, "serve", "status").stdout)
    application = status["applications"]["mnist"]
    assert application["status"] == "RUNNING", status
    replicas = application["deployments"]["MnistService"]["replica_states"]
    manifest = yaml.safe_load(RAY_SERVICE.read_text())
    wanted = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"][0]
    assert replicas == {"RUNNING": wanted["deployments"][0]["autoscaling_config"]["min_replicas"]}
