"""Reduced precision as a client sees it: the INT8 twin that passed its gate is served by
default and named in every answer, fp32 on request, a twin that failed its gate (or is damaged)
never serves, and every wrong request says what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from devtools.committed import committed_models
from mnist_shared.manifest import Manifest, latest_version
from mnist_shared.preprocessing import scale_pixels
from service.runtime.model_loading import LoadFailed, load_version

COMMITTED = committed_models()


def committed(variant: str = "group") -> Path:
    return COMMITTED / variant / str(latest_version(COMMITTED / variant))


def expected(variant: str, precision: str, pixels: np.ndarray) -> np.ndarray:
    """What the version's ONNX file of `precision` reads, straight from onnxruntime."""
    version_dir = committed(variant)
    session = ort.InferenceSession(
        str(version_dir / Manifest.read(version_dir).precision_files()[precision])
    )
    return session.run(None, {"image": scale_pixels(pixels)})[0]


def copy_group(models: Path, edit=None) -> Path:
    """The committed group version copied under `models`, its manifest changed by `edit`."""
    target = models / "group" / committed().name
    shutil.copytree(committed(), target)
    if edit:
        manifest = json.loads((target / "manifest.json").read_text())
        edit(manifest)
        (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


@pytest.fixture(scope="module")
def pixels(mnist) -> np.ndarray:
    return mnist.test_images[:16]


def test_every_committed_model_has_an_int8_twin_that_passed_its_gate():
    for variant in ("group", "instance", "layer"):
        manifest = Manifest.read(committed(variant))
        twin = manifest.precisions["int8"]
        assert twin.passed_gate and twin.file == "model.int8.onnx", twin.reason
        assert twin.agreement >= 0.998 and twin.kinds  # gated on the client-like kinds too
        assert all(k["fp32_accuracy"] - k["accuracy"] <= 0.005 + 1e-9 for k in twin.kinds.values())
        assert manifest.fastest_precision() == "int8"  # it measured faster at export


def test_the_fastest_precision_serves_by_default_and_the_answer_names_it(client, pixels):
    response = client.post("/predict", json={"pixels": pixels.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert body["precision"] == "int8" and body["backend"] == "onnx"
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected("group", "int8", pixels), atol=1e-6)


def test_fp32_on_request_is_the_exported_model(client, pixels):
    response = client.post("/predict?precision=fp32", json={"pixels": pixels.tolist()})
    body = response.json()
    assert response.status_code == 200 and body["precision"] == "fp32"
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected("group", "fp32", pixels), atol=1e-6)


def test_every_variant_names_its_precision(client, pixels):
    body = client.post("/predict?variant=all", json={"pixels": pixels[:2].tolist()}).json()
    assert {name: r["precision"] for name, r in body["results"].items()} == {
        "group": "int8", "instance": "int8", "layer": "int8"
    }  # fmt: skip


def test_the_default_can_be_fp32(app_client, pixels):
    client = app_client(default_precision="fp32")
    assert client.post("/predict", json={"pixels": pixels.tolist()}).json()["precision"] == "fp32"
    asked = client.post("/predict?precision=int8", json={"pixels": pixels.tolist()})
    assert asked.json()["precision"] == "int8"


def test_the_open_inference_protocol_takes_and_names_the_precision(client, pixels):
    tensor = {"name": "image", "datatype": "FP32", "shape": [2, 28, 28]}
    tensor["data"] = scale_pixels(pixels[:2]).ravel().tolist()
    default = client.post("/v2/models/group/infer", json={"inputs": [tensor]}).json()
    assert default["parameters"] == {"precision": "int8"}
    asked = client.post(
        "/v2/models/group/infer",
        json={"id": "a", "parameters": {"precision": "fp32", "x": 1}, "inputs": [tensor]},
    ).json()
    assert asked["parameters"] == {"precision": "fp32"}  # what ran, not the client's copied
    probabilities = np.array(asked["outputs"][0]["data"]).reshape(2, 10)
    np.testing.assert_allclose(probabilities, expected("group", "fp32", pixels[:2]), atol=1e-6)


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        (
            "precision=fp16",
            400,
            "unknown precision 'fp16': choose one of fp32, int8, or name none for the fastest "
            "that passed its accuracy gate.",
        ),
        (
            "precision=int8&backend=savedmodel",
            400,
            "precision int8 runs on the onnx backend only; the savedmodel backend serves fp32.",
        ),
    ],
)
def test_a_precision_that_cannot_run_is_refused_saying_why(client, pixels, query, status, error):
    response = client.post(f"/predict?{query}", json={"pixels": pixels[:1].tolist()})
    assert response.status_code == status and response.json() == {"error": error}


def test_a_non_string_precision_parameter_is_refused(client, pixels):
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 28, 28]}
    tensor["data"] = scale_pixels(pixels[:1]).ravel().tolist()
    response = client.post(
        "/v2/models/group/infer", json={"parameters": {"precision": 8}, "inputs": [tensor]}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "parameter 'precision' must be a string such as \"int8\", not '8'."
    }


def test_a_twin_that_failed_its_gate_is_never_served(app_client, tmp_path, pixels):
    def failed(manifest: dict) -> None:
        twin = manifest["precisions"]["int8"]
        twin |= {"passed_gate": False, "file": None, "reason": "too far from fp32"}

    copy_group(tmp_path, failed)
    client = app_client(models_dir=tmp_path)
    assert client.post("/predict", json={"pixels": pixels.tolist()}).json()["precision"] == "fp32"
    response = client.post("/predict?precision=int8", json={"pixels": pixels[:1].tolist()})
    assert response.status_code == 404
    assert response.json() == {
        "error": f"group version {committed().name} has no int8 model (it failed its accuracy "
        "gate: too far from fp32). Ask for precision=fp32, or name none for the fastest that "
        "passed its gate."
    }
    (described,) = client.get("/models").json()["models"]
    assert described["precisions"] == ["fp32"]
    assert described["precision_gate"]["int8"]["reason"] == "too far from fp32"


def test_a_damaged_twin_refuses_the_whole_version(tmp_path):
    version_dir = copy_group(tmp_path)
    twin = version_dir / "model.int8.onnx"
    twin.write_bytes(twin.read_bytes()[:-1] + b"!")
    with pytest.raises(LoadFailed, match=r"sha256 of model\.int8\.onnx .* does not match"):
        load_version(version_dir, threads=1)


def test_models_lists_the_precisions_fastest_first_with_the_gates_figures(client):
    models = {entry["variant"]: entry for entry in client.get("/models").json()["models"]}
    assert models["layer"]["precisions"] == ["int8", "fp32"]
    gate = models["layer"]["precision_gate"]["int8"]
    assert gate["passed_gate"] and gate["cpu_us_per_image"] < gate["fp32_cpu_us_per_image"]
