"""The Kubernetes and Ray manifests agree with the service: probe paths that exist, settings that
are real, the KubeRay application the same as the Ray Serve config. (Their schemas are checked by
`kubernetes-validate --strict` in `make lint`.) And the model manifests: a version is refused
unless every file it loads is listed with its sha256 and lies inside its directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from devtools.committed import committed_models
from mnist_shared.manifest import MANIFEST_NAME, Manifest, sha256_file, verify_artifacts
from service.app import create_app
from service.runtime.model_loading import LoadFailed, load_version
from service.settings import Settings
from tests.conftest import REPO_ROOT, wait_ready

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
    settings = Settings(models_dir=committed_models())
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


# -- Model manifests (models/<variant>/<version>/manifest.json): every file a version loads is
# listed with its sha256 and lies inside the version directory, or the version is refused. --

GROUP_3 = committed_models() / "group" / "3"


def _copy_version(models: Path, version: int = 3) -> Path:
    """The committed group version as `version`: its ONNX files, SavedModel and manifest."""
    directory = models / "group" / str(version)
    directory.mkdir(parents=True)
    for onnx_file in GROUP_3.glob("*.onnx"):  # fp32's and the INT8 twin's
        shutil.copy(onnx_file, directory)
    shutil.copytree(GROUP_3 / "saved_model", directory / "saved_model")
    manifest = json.loads((GROUP_3 / MANIFEST_NAME).read_text())
    manifest["version"] = version
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


def _edit(directory: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    change(manifest)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))


def _elsewhere(directory: Path) -> Path:
    """A genuine copy of the ONNX file outside the version, so only its place is wrong."""
    outside = directory.parent.parent / "elsewhere" / "model.onnx"
    outside.parent.mkdir(exist_ok=True)
    shutil.copy(GROUP_3 / "model.onnx", outside)
    return outside


def _onnx_elsewhere(directory: Path, name: Callable[[Path], str]) -> None:
    """`onnx_file` names the outside copy, listed with its true sha256."""
    onnx_file = name(_elsewhere(directory))

    def change(manifest: dict) -> None:
        manifest["onnx_file"] = onnx_file
        manifest["files"][onnx_file] = sha256_file(GROUP_3 / "model.onnx")

    _edit(directory, change)


def _symlink_out(directory: Path) -> None:
    (directory / "model.onnx").unlink()
    (directory / "model.onnx").symlink_to(_elsewhere(directory))  # same bytes, same sha256


BREAKAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing ONNX entry": (
        lambda d: _edit(d, lambda m: m["files"].pop("model.onnx")),
        "model.onnx in {dir} is loaded but not listed in the files of its manifest.json",
    ),
    "absolute onnx_file": (
        lambda d: _onnx_elsewhere(d, str),
        "onnx_file entry '{outside}' in the manifest.json of {dir} is not a relative path",
    ),
    "dot-dot onnx_file": (
        lambda d: _onnx_elsewhere(d, lambda _: "../../elsewhere/model.onnx"),
        "onnx_file entry '../../elsewhere/model.onnx' in the manifest.json of {dir} is not a",
    ),
    "symlink out": (
        _symlink_out,
        "model.onnx in {dir} leads to {outside} through a symlink, outside the version",
    ),
    "wrong sha256": (
        lambda d: _edit(d, lambda m: m["files"].update({"model.onnx": "0" * 64})),
        "sha256 of model.onnx (",
    ),
    "absolute saved_model_dir": (
        lambda d: _edit(d, lambda m: m.update(saved_model_dir=str(GROUP_3 / "saved_model"))),
        f"saved_model_dir entry '{GROUP_3 / 'saved_model'}' in the manifest.json of {{dir}}",
    ),
}


def test_a_good_model_manifest_loads_and_its_savedmodel_verifies(tmp_path):
    directory = _copy_version(tmp_path)
    manifest, _ = load_version(directory, threads=1)
    assert manifest.version == 3
    verify_artifacts(directory, manifest, only=[manifest.saved_model_dir + "/"])


def test_a_symlink_inside_the_version_still_loads(tmp_path):
    directory = _copy_version(tmp_path)
    (directory / "blobs").mkdir()
    (directory / "model.onnx").rename(directory / "blobs" / "model.onnx")
    (directory / "model.onnx").symlink_to(Path("blobs") / "model.onnx")
    assert load_version(directory, threads=1)[0].version == 3


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_version_loading_an_unvouched_file_is_refused_with_the_reason(tmp_path, breakage):
    directory = _copy_version(tmp_path)
    breaks, reason = BREAKAGES[breakage]
    breaks(directory)
    with pytest.raises(LoadFailed) as refused:
        load_version(directory, threads=1)
    outside = tmp_path / "elsewhere" / "model.onnx"
    assert reason.format(dir=directory, outside=outside) in str(refused.value)
    assert "Re-export" in str(refused.value)  # says what to do


def test_the_savedmodel_s_files_must_all_be_listed_and_inside(tmp_path):
    directory = _copy_version(tmp_path)
    manifest = Manifest.read(directory)
    only = [manifest.saved_model_dir + "/"]  # what SavedModelBackend checks before loading
    (directory / "saved_model" / "variables" / "extra.data").write_bytes(b"unlisted")
    with pytest.raises(ValueError, match=r"saved_model/variables/extra\.data in .* not listed"):
        verify_artifacts(directory, manifest, only=only)
    (directory / "saved_model" / "variables" / "extra.data").unlink()
    verify_artifacts(directory, manifest, only=only)
    # A subdirectory linked out is refused before it is walked, listed files or not.
    (tmp_path / "assets").mkdir()
    (directory / "saved_model" / "assets").symlink_to(tmp_path / "assets")
    with pytest.raises(ValueError, match=r"saved_model/assets in .* through a symlink, outside"):
        verify_artifacts(directory, manifest, only=only)
    (directory / "saved_model" / "assets").unlink()
    shutil.move(directory / "saved_model" / "variables", tmp_path / "variables")
    (directory / "saved_model" / "variables").symlink_to(tmp_path / "variables")
    with pytest.raises(ValueError, match=r"saved_model/variables/\S+ in .* through a symlink"):
        verify_artifacts(directory, manifest, only=only)


def test_the_service_refuses_the_version_with_its_reason_and_serves_the_previous(tmp_path):
    _copy_version(tmp_path, 3)
    BREAKAGES["missing ONNX entry"][0](_copy_version(tmp_path, 4))
    with TestClient(create_app(Settings(models_dir=tmp_path))) as client:
        wait_ready(client)
        (group,) = client.get("/models").json()["models"]
        versions = {row["version"]: row for row in group["versions"]}
        assert versions[3]["state"] == "serving"
        assert versions[4]["state"] == "failed"
        assert "model.onnx in" in versions[4]["reason"]
        assert "not listed in the files of its manifest.json" in versions[4]["reason"]
