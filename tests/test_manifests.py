"""The Kubernetes and Ray manifests agree with the service: probe paths that exist, settings that
are real, the KubeRay application the same as the Ray Serve config. (Their schemas are checked by
`kubernetes-validate --strict` in `make lint`.)"""

from __future__ import annotations

import subprocess
import sys
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
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


def _kustomize(directory: str) -> list[dict]:
    """What `kubectl apply -k` would send: the kustomization rendered offline."""
    kubectl = Path(sys.executable).parent / "kubectl"
    rendered = subprocess.run(
        [str(kubectl), "kustomize", str(REPO_ROOT / "deploy" / directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(yaml.safe_load_all(rendered))


def _hidden_by_a_mount(pod: dict, container: dict, path: str) -> dict | None:
    """The volume the kubelet would mount over `path` (or a directory above it), if any."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return volumes[mount["name"]]
    return None


def _dockerfile_serve_stage() -> str:
    return (REPO_ROOT / "Dockerfile").read_text().split(" AS serve\n", 1)[1].split("\nFROM ")[0]


def test_a_stock_cluster_serves_the_image_s_models_without_any_volume():
    objects = _kustomize("k8s")
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert _hidden_by_a_mount(pod, api, "/app/models") is None
    stage = _dockerfile_serve_stage()  # so /app/models is the image's own copy
    assert "WORKDIR /app\n" in (REPO_ROOT / "Dockerfile").read_text()
    assert "COPY models/ models/" in stage
    assert "MNIST_MODELS_DIR=/app/models" in stage


def test_the_models_volume_overlay_is_seeded_from_the_image_and_read_only():
    objects = _kustomize("k8s-models-volume")
    (claim,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # what stock clusters offer
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    volume = _hidden_by_a_mount(pod, api, "/app/models")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert next(m for m in api["volumeMounts"] if m["mountPath"] == "/app/models")["readOnly"]
    (seed,) = pod["initContainers"]
    assert seed["image"] == api["image"]
    assert _hidden_by_a_mount(pod, seed, "/app/models") is None  # it reads the image's models
    assert _hidden_by_a_mount(pod, seed, "/seed") == volume
    assert "copytree" in seed["command"][-1]


def test_kuberay_workers_serve_the_image_s_models():
    service = load(REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml")
    for group in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        for container in pod["containers"]:
            assert _hidden_by_a_mount(pod, container, "/app/models") is None


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
