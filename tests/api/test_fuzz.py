"""Property-based fuzzing of every request path: whatever a client sends to `/predict`, `/v2`
REST or gRPC, the answer is never a 500 (gRPC: never UNKNOWN or INTERNAL), and an error says
what went wrong. Hypothesis draws bodies, headers, query strings, tensor shapes and numbers,
and mutates real pictures byte by byte (what breaks decoders)."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import quote

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DATATYPES = ["FP32", "FP16", "FP64", "INT8", "UINT8", "INT64", "BOOL", "BYTES"]


def _encoded(fmt: str, **options: Any) -> bytes:
    pixels = np.full((40, 40), 230, np.uint8)
    pixels[8:32, 18:22] = 20  # a "1"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


SEEDS = [
    _encoded("PNG"),
    _encoded("JPEG"),
    _encoded("JPEG", progressive=True),
    _encoded("WEBP"),
    _encoded("GIF"),
    _encoded("TIFF"),
    _encoded("BMP"),
]


@st.composite
def pictures(draw: st.DrawFn) -> bytes:
    """A real picture with some bytes changed, cut short or extended, or random bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=20))


numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(10**400),
    st.integers(0, 255),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
pixel_arrays = st.lists(
    st.lists(st.lists(numbers, min_size=28, max_size=28), min_size=27, max_size=29),
    min_size=0,
    max_size=2,
)


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()  # NaN and Infinity written as JSON has them not


def _assert_answered(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error, str) and error


# -- /predict -----------------------------------------------------------------------------------


predict_bodies = st.one_of(
    st.tuples(st.sampled_from(["image/png", "image/jpeg", "application/octet-stream"]), pictures()),
    st.tuples(
        st.just("application/json"),
        st.one_of(
            st.builds(lambda p: _json({"pixels": p}), pixel_arrays | json_values),
            st.builds(lambda i: _json({"images": i}), st.lists(st.text(max_size=30), max_size=3)),
            st.builds(_json, json_values),
            st.binary(max_size=100),
        ),
    ),
    st.tuples(
        st.sampled_from(
            ["multipart/form-data; boundary=xyz", "multipart/form-data", "text/plain", ""]
        ),
        st.binary(max_size=300)
        | st.builds(
            lambda p: (
                b'--xyz\r\nContent-Disposition: form-data; name="file"; '
                b'filename="a"\r\n\r\n' + p + b"\r\n--xyz--\r\n"
            ),
            pictures(),
        ),
    ),
)
queries = st.dictionaries(
    st.sampled_from(["variant", "version", "backend", "return_input"]),
    st.sampled_from(["group", "all", "onnx", "true", "3", "", "0", "-1", "9" * 30]) | st.text(),
    max_size=3,
)


@FUZZ
@given(body=predict_bodies, query=queries)
def test_predict_never_answers_500(answering_client, body, query):
    content_type, content = body
    headers = {"content-type": content_type} if content_type else {}
    _assert_answered(
        answering_client.post("/predict", params=query, content=content, headers=headers)
    )


# -- /v2 REST -----------------------------------------------------------------------------------


# What an HTTP client can put in a header or a path at all (httpx refuses the rest itself).
visible_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8)
shapes = st.lists(st.integers(-3, 2**63 - 1) | st.integers(0, 30), max_size=4)
tensor_inputs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["image", "image_bytes"]) | st.text(max_size=5),
        "datatype": st.sampled_from(DATATYPES) | st.text(max_size=5),
        "shape": shapes,
    },
    optional={
        "data": json_values | st.lists(numbers, max_size=800),
        "parameters": st.dictionaries(st.sampled_from(["binary_data_size"]), json_values),
    },
)
inference_requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensor_inputs, max_size=2)},
    optional={
        "id": st.text(max_size=10),
        "parameters": st.dictionaries(st.text(max_size=20), json_values, max_size=3),
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["digit", "probabilities"]) | st.text(max_size=5)},
                optional={"parameters": st.dictionaries(st.text(max_size=12), json_values)},
            ),
            max_size=2,
        ),
    },
)


@FUZZ
@given(
    document=inference_requests | json_values,
    binary=st.none() | st.binary(max_size=4000),
    header_length=st.none() | st.integers(-5, 10**6).map(str) | visible_text,
    path=st.sampled_from(["group/infer", "group/versions/3/infer", "nope/infer"])
    | visible_text.map(lambda version: f"group/versions/{quote(version, safe='')}/infer"),
)
def test_v2_infer_never_answers_500(answering_client, document, binary, header_length, path):
    content = _json(document) + (binary or b"")
    headers = {"content-type": "application/json"}
    if header_length is not None:
        headers["inference-header-content-length"] = header_length
    response = answering_client.post(f"/v2/models/{path}", content=content, headers=headers)
    if response.status_code != 404 or "error" in response.text:
        _assert_answered(response)


# -- gRPC ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub(server):
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


CONTENTS = {  # the contents field of each datatype
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "UINT8": "uint_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


@st.composite
def grpc_requests(draw: st.DrawFn) -> Any:
    from tritonclient.grpc import service_pb2 as pb

    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["group", "layer", "nope"])),
        model_version=draw(st.sampled_from(["", "3", "x", "9" * 30])),
    )
    for _ in range(draw(st.integers(0, 2))):
        datatype = draw(st.sampled_from(DATATYPES) | st.text(max_size=4))
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["image", "image_bytes"]) | st.text(max_size=4)),
            datatype=datatype,
            shape=draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 30), max_size=4)),
        )
        if datatype in CONTENTS and draw(st.booleans()):
            values = {
                "BYTES": st.lists(pictures(), max_size=2),
                "BOOL": st.lists(st.booleans(), max_size=800),
                "FP32": st.lists(st.floats(width=32), max_size=800),
                "FP64": st.lists(st.floats(), max_size=800),
                "UINT8": st.lists(st.integers(0, 2**32 - 1), max_size=800),
                "INT64": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=800),
            }.get(datatype, st.lists(st.integers(-(2**31), 2**31 - 1), max_size=800))
            getattr(tensor.contents, CONTENTS[datatype]).extend(draw(values))
        else:
            request.raw_input_contents.append(draw(pictures() | st.binary(max_size=4000)))
    return request


@FUZZ
@given(request=grpc_requests())
def test_grpc_infer_never_answers_unknown_or_internal(stub, request):
    try:
        stub.ModelInfer(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (
            error.details()
        )
        assert error.details()
