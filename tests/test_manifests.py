"""The Kubernetes and Ray manifests agree with the service: probe paths that exist, settings that
are real, the KubeRay application the same as the Ray Serve config. (Their schemas are checked by
`kubernetes-validate --strict` in `make lint`.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
SETTINGS = {f"MNIST_{name.upper()}" for name in Settings.model_fields}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def container() -> dict:
    (container,) = load(K8S / "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return container


def test_probes_ask_the_service_the_right_questions(container):
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
    routes = set(create_app(Settings()).openapi()["paths"])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in routes


def test_probe_paths_answer(container):
    settings = Settings(models_dir=REPO_ROOT / "models")
    with TestClient(create_app(settings)) as client:
        assert client.get(container["livenessProbe"]["httpGet"]["path"]).status_code == 200


def test_the_configmap_holds_only_real_settings_that_parse():
    data = load(K8S / "configmap.yaml")["data"]
    assert set(data) <= SETTINGS, set(data) - SETTINGS
    Settings(**{key.removeprefix("MNIST_").lower(): value for key, value in data.items()})


def test_the_pod_is_locked_down_and_drains_before_it_stops(container):
    pod = load(K8S / "deployment.yaml")["spec"]["template"]["spec"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert "preStop" in container["lifecycle"]
    grace = float(load(K8S / "configmap.yaml")["data"]["MNIST_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > grace + 5  # the preStop pause + the drain
    assert container["resources"]["limits"]["cpu"] and container["resources"]["requests"]["cpu"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/app/models"]["readOnly"] and "/tmp" in mounts


def test_kuberay_serves_the_ray_serve_config_application():
    (serve_app,) = load(REPO_ROOT / "deploy" / "ray" / "serve_config.yaml")["applications"]
    service = load(REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml")
    (kuberay_app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    for key in ("name", "route_prefix", "import_path"):
        assert kuberay_app[key] == serve_app[key]
    env = kuberay_app["runtime_env"]["env_vars"]
    assert env.pop("MNIST_MODELS_DIR") == "/app/models"  # the image's models volume
    serve_env = dict(serve_app["runtime_env"]["env_vars"])
    assert serve_env.pop("MNIST_MODELS_DIR") == "models"  # the installed checkout's
    assert env == serve_env
    assert set(env) <= SETTINGS
    (serve_deployment,) = serve_app["deployments"]
    (kuberay_deployment,) = kuberay_app["deployments"]
    scaling = ("num_replicas", "autoscaling_config")
    assert {k: v for k, v in serve_deployment.items() if k not in scaling} == {
        k: v for k, v in kuberay_deployment.items() if k not in scaling
    }
