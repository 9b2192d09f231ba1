"""The Open Inference Protocol, REST and gRPC, driven by the stock `tritonclient` clients.

One `python -m service` serves HTTP and gRPC on free ports, on the committed models.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.servers import Server
from mnist_shared.preprocessing import scale_pixels


@pytest.fixture(scope="module")
def http(server):
    return httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")


@pytest.fixture(scope="module")
def grpc(server):
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def _predict(server, images: np.ndarray, variant: str, precision: str = "") -> np.ndarray:
    files = [("file", (f"{i}.png", _png(image), "image/png")) for i, image in enumerate(images)]
    url = f"{server.url}/predict"
    params = {"variant": variant, "precision": precision}
    answer = httpx.post(url, params=params, files=files).json()
    return np.array([p["probabilities"] for p in answer["predictions"]], np.float32)


# -- health and metadata ----------------------------------------------------------------------


def test_health_and_server_metadata(http, grpc):
    assert http.is_server_live() and http.is_server_ready()
    assert grpc.is_server_live() and grpc.is_server_ready()
    rest, over_grpc = http.get_server_metadata(), grpc.get_server_metadata(as_json=True)
    for metadata in (rest, over_grpc):
        assert metadata["name"] == "mnist-normalization-serving"
    # The binary tensor extension is REST's; gRPC has its raw contents instead.
    assert "binary_tensor_data" in rest["extensions"]
    assert "binary_tensor_data" not in over_grpc.get("extensions", [])


@pytest.mark.parametrize("variant", ["group", "instance", "layer"])
def test_model_metadata_and_readiness(http, grpc, variant):
    for metadata in (
        http.get_model_metadata(variant),
        grpc.get_model_metadata(variant, as_json=True),
    ):
        assert metadata["name"] == variant
        version = metadata["versions"][0]
        inputs = {
            t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["inputs"]
        }
        assert inputs == {"image": ("FP32", [-1, 28, 28]), "image_bytes": ("BYTES", [-1])}
        outputs = {t["name"]: t["datatype"] for t in metadata["outputs"]}
        assert outputs == {
            "probabilities": "FP32", "digit": "INT64",  # and where each digit of a number is:
            "boxes": "INT64", "picture": "INT64", "line": "INT64",
            "looks_like_digit": "BOOL", "digit_score": "FP32",  # the digit check's verdicts
        }  # fmt: skip
    assert http.is_model_ready(variant) and http.is_model_ready(variant, version)
    assert grpc.is_model_ready(variant) and grpc.is_model_ready(variant, version)


# -- inference --------------------------------------------------------------------------------


def _image_input(module, images: np.ndarray, binary: bool | None = None):
    tensor = module.InferInput("image", list(images.shape), "FP32")
    if binary is None:
        tensor.set_data_from_numpy(images)
    else:
        tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_infer_equals_predict(server, http, mnist, binary):
    images = mnist.test_images[:8]
    outputs = [
        httpclient.InferRequestedOutput(name, binary_data=binary)
        for name in ("probabilities", "digit")
    ]
    result = http.infer(
        "group", [_image_input(httpclient, scale_pixels(images), binary)], outputs=outputs
    )
    probabilities = result.as_numpy("probabilities")
    np.testing.assert_allclose(probabilities, _predict(server, images, "group"), atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("digit"), probabilities.argmax(axis=1))
    assert (result.as_numpy("digit") == mnist.test_labels[:8]).all()


def test_http_defaults_binary_everything(http, mnist):
    result = http.infer("layer", [_image_input(httpclient, scale_pixels(mnist.test_images[:1]))])
    assert result.as_numpy("digit").tolist() == [int(mnist.test_labels[0])]
    assert result.as_numpy("probabilities").shape == (1, 10)


def test_grpc_infer_equals_predict(server, grpc, mnist):
    images = mnist.test_images[8:16]
    result = grpc.infer("instance", [_image_input(grpcclient, scale_pixels(images))])
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), _predict(server, images, "instance"), atol=1e-6
    )
    assert result.get_response().model_version == result.get_response().model_version.strip()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("client_name", ["http", "grpc"])
def test_the_precision_parameter_picks_the_model_and_is_answered(
    request, server, mnist, client_name, precision
):
    client = request.getfixturevalue(client_name)
    module = httpclient if client_name == "http" else grpcclient
    images = mnist.test_images[30:34]
    result = client.infer(
        "layer",
        [_image_input(module, scale_pixels(images))],
        parameters={"precision": precision},
    )
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), _predict(server, images, "layer", precision), atol=1e-6
    )
    response = result.get_response()
    answered = (
        response["parameters"]["precision"]
        if client_name == "http"
        else response.parameters["precision"].string_param
    )
    assert answered == precision


@pytest.mark.parametrize("client_name", ["http", "grpc"])
def test_image_bytes_are_preprocessed_like_predict(request, server, mnist, client_name):
    client = request.getfixturevalue(client_name)
    module = httpclient if client_name == "http" else grpcclient
    images = mnist.test_images[20:24]
    encoded = np.array([_png(image) for image in images], dtype=np.object_)
    tensor = module.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(encoded)
    result = client.infer("group", [tensor], outputs=[module.InferRequestedOutput("probabilities")])
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), _predict(server, images, "group"), atol=1e-6
    )


@pytest.mark.parametrize("client_name", ["http", "grpc"])
def test_the_digit_checks_verdicts_are_outputs(request, server, mnist, client_name):
    """BOOL and FP32 outputs a stock client decodes, equal to /predict's fields."""
    client = request.getfixturevalue(client_name)
    module = httpclient if client_name == "http" else grpcclient
    letter = np.zeros((28, 28), np.uint8)
    letter[5:23, 6:9] = letter[5:23, 19:22] = letter[5:8, 6:22] = letter[13:16, 6:22] = 255
    images = np.stack([mnist.test_images[0], letter])
    names = ("looks_like_digit", "digit_score")
    result = client.infer(
        "group",
        [_image_input(module, scale_pixels(images))],
        outputs=[module.InferRequestedOutput(name) for name in names],
    )
    flags, scores = (result.as_numpy(name) for name in names)
    assert flags.dtype == np.bool_ and flags.tolist() == [True, False]
    files = [("file", (f"{i}.png", _png(image), "image/png")) for i, image in enumerate(images)]
    predictions = httpx.post(f"{server.url}/predict", files=files).json()["predictions"]
    assert [p["looks_like_digit"] for p in predictions] == flags.tolist()
    np.testing.assert_allclose([p["digit_score"] for p in predictions], scores, rtol=1e-6)


def test_id_and_versioned_route_round_trip_and_parameters_are_not_echoed(server, http, grpc, mnist):
    version = http.get_model_metadata("group")["versions"][0]
    result = http.infer(
        "group",
        [_image_input(httpclient, scale_pixels(mnist.test_images[:1]))],
        model_version=version,
        request_id="req-42",
        parameters={"trace": "abc"},
    )
    response = result.get_response()
    assert response["id"] == "req-42" and response["model_version"] == version
    # The answer's parameters are what the service knows, never the client's copied back.
    assert set(response["parameters"]) == {"precision"}
    answer = grpc.infer(
        "group",
        [_image_input(grpcclient, scale_pixels(mnist.test_images[:1]))],
        parameters={"trace": "abc" * 300},
    ).get_response()
    assert set(answer.parameters) == {"precision"}


def test_curl_style_json_with_base64_image_bytes(server, mnist):
    body = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(_png(mnist.test_images[3])).decode()],
            }
        ],
        "outputs": [{"name": "digit"}],
    }
    response = httpx.post(f"{server.url}/v2/models/layer/infer", json=body)
    assert response.status_code == 200
    (digit,) = response.json()["outputs"]
    assert digit == {
        "name": "digit",
        "datatype": "INT64",
        "shape": [1],
        "data": [int(mnist.test_labels[3])],
    }


# -- errors -----------------------------------------------------------------------------------


def _raw_infer(server, model: str, inputs: list[dict]):
    url = f"{server.url}/v2/models/{model}/infer"
    return httpx.post(url, json={"inputs": inputs})


IMAGE = {"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": [0.5] * 784}


@pytest.mark.parametrize(
    ("model", "inputs", "status", "message"),
    [
        ("group", [IMAGE | {"shape": [1, 28, 27]}], 400, "shape [1, 28, 27] holds 756 elements"),
        ("group", [IMAGE | {"shape": [2, 392]}], 400, "expected [N, 28, 28]"),
        ("group", [IMAGE | {"datatype": "INT32"}], 400, "must be FP32, not INT32"),
        ("group", [IMAGE | {"datatype": "FP31"}], 400, "unknown datatype 'FP31'"),
        ("group", [IMAGE | {"name": "pixels"}], 400, "unknown input 'pixels'"),
        ("group", [IMAGE | {"data": [2.0] * 784}], 400, "in 0..1"),
        ("group", [IMAGE, IMAGE], 400, "2 inputs sent"),
        ("batch", [IMAGE], 404, "unknown model 'batch': served models are group, instance, layer"),
        ("group/versions/99", [IMAGE], 404, "version 99 of model 'group' is not loaded"),
    ],
)
def test_http_errors(server, model, inputs, status, message):
    response = _raw_infer(server, model, inputs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_http_unknown_model_metadata_is_404(server):
    response = httpx.get(f"{server.url}/v2/models/batch")
    assert response.status_code == 404 and "unknown model 'batch'" in response.json()["error"]


@pytest.mark.parametrize(
    ("model", "shape", "code", "message"),
    [
        ("group", [1, 28, 27], "StatusCode.INVALID_ARGUMENT", "expected [N, 28, 28]"),
        ("batch", [1, 28, 28], "StatusCode.NOT_FOUND", "unknown model 'batch'"),
    ],
)
def test_grpc_errors(grpc, model, shape, code, message):
    tensor = grpcclient.InferInput("image", shape, "FP32")
    tensor.set_data_from_numpy(np.zeros(shape, np.float32).reshape(shape))
    with pytest.raises(InferenceServerException) as error:
        grpc.infer(model, [tensor])
    assert error.value.status() == code and message in error.value.message()


def test_grpc_unknown_version_is_not_found(grpc):
    with pytest.raises(InferenceServerException) as error:
        grpc.get_model_metadata("group", "99")
    assert error.value.status() == "StatusCode.NOT_FOUND"
    assert "version 99 of model 'group' is not loaded" in error.value.message()


def test_a_model_that_failed_to_load_is_503_and_unavailable(tmp_path):
    for variant in ("group", "layer"):
        shutil.copytree(committed_models() / variant, tmp_path / variant)
    onnx_file = next((tmp_path / "layer").glob("*/model.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10] + b"0123456789")
    broken = Server(tmp_path)
    try:
        broken.wait_loaded()
        ready = httpx.get(f"{broken.url}/v2/health/ready")
        assert ready.status_code == 503 and "does not match the manifest" in ready.json()["error"]
        response = httpx.post(f"{broken.url}/v2/models/layer/infer", json={"inputs": [IMAGE]})
        assert response.status_code == 503 and "failed to load" in response.json()["error"]
        model_ready = httpx.get(f"{broken.url}/v2/models/layer/ready")
        assert model_ready.status_code == 503
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{broken.grpc_port}")
        assert not client.is_server_ready() and not client.is_model_ready("layer")
        assert client.is_model_ready("group")
        tensor = grpcclient.InferInput("image", [1, 28, 28], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 28, 28), np.float32))
        with pytest.raises(InferenceServerException) as error:
            client.infer("layer", [tensor])
        assert error.value.status() == "StatusCode.UNAVAILABLE"
        assert "failed to load" in error.value.message()
    finally:
        broken.stop()


def test_binary_request_with_bad_header_length(server):
    response = httpx.post(
        f"{server.url}/v2/models/group/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "99"},
    )
    assert (
        response.status_code == 400
        and "Inference-Header-Content-Length" in response.json()["error"]
    )


def test_binary_bytes_element_running_past_the_data(server):
    raw = struct.pack("<I", 100) + b"short"
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    response = httpx.post(
        f"{server.url}/v2/models/group/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400 and "runs past the data" in response.json()["error"]


def test_committed_grpc_stubs_match_the_proto(tmp_path):
    stubs = REPO_ROOT / "service" / "grpc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{stubs}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(stubs / "grpc_predict_v2.proto"),
        ],
        check=True,
    )
    assert (tmp_path / "grpc_predict_v2_pb2.py").read_text() == (
        stubs / "grpc_predict_v2_pb2.py"
    ).read_text(), "regenerate with `make grpc-stubs`"
    generated = (tmp_path / "grpc_predict_v2_pb2_grpc.py").read_text()
    generated = generated.replace(
        "import grpc_predict_v2_pb2", "from service.grpc import grpc_predict_v2_pb2"
    )
    assert generated == (stubs / "grpc_predict_v2_pb2_grpc.py").read_text()
