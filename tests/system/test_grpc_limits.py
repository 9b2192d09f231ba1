"""gRPC's answers to odd inputs and its server limits (service/grpc/server.py).

Odd inputs go to a real `python -m service` (the session's `server`) through tritonclient's
protocol messages: a client input gets a client status (INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
NOT_FOUND) with a message saying what to send, never UNKNOWN with an exception's text. A bug
(INTERNAL, generic message) and the concurrency and idle limits are checked on a `GrpcServer`
over a fake data plane in a subprocess: the service's gRPC stubs and tritonclient's register
the same protocol names, and one process holds only one of them.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from devtools import REPO_ROOT
from devtools.servers import Server
from service.errors import Overloaded
from service.settings import Settings

SECRET = "secret internal detail 0xdeadbeef"
# A Python exception's text as grpc writes it for an unhandled one: "Unexpected <class ...>".
LEAKS = ("Unexpected", "<class", "Traceback", "Error:", SECRET)


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[Any]:
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.grpc_port}", options=[("grpc.max_send_message_length", -1)]
    )
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def _request(
    name: str, datatype: str, shape: list[int], raw: bytes | None = None, **contents: Any
) -> Any:
    from tritonclient.grpc import service_pb2 as pb

    request = pb.ModelInferRequest(model_name="group")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def _picture(width: int, height: int, ink: bool) -> bytes:
    pixels = np.full((height, width), 255, np.uint8)
    if ink:
        pixels[height // 2, width // 4 : 3 * width // 4] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _answer(stub: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        stub.ModelInfer(request, timeout=30)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


INVALID, TOO_LARGE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
NO_IMAGE = b"\0" * 784 * 4
IMAGE = ("image", "FP32", [1, 28, 28])


def _case(case_id: str, code: grpc.StatusCode, message: str, *args: Any, **contents: Any) -> Any:
    """A ModelInfer request (`_request`'s arguments) and the status and message it gets."""
    return pytest.param(args, contents, code, message, id=case_id)


@pytest.mark.parametrize(
    ("args", "contents", "code", "message"),
    [
        _case("negative-raw", INVALID, "negative", "image", "FP32", [-1, -1], b"\0" * 4),
        _case("negative", INVALID, "negative", "image", "FP32", [-1, -1], fp32_contents=[0.0]),
        _case(
            "2**60-raw",
            TOO_LARGE,
            "MAX_IMAGES_PER_REQUEST",
            "image",
            "FP32",
            [2**60, 28, 28],
            NO_IMAGE,
        ),
        _case(
            "2**60",
            TOO_LARGE,
            "MAX_IMAGES_PER_REQUEST",
            "image",
            "FP32",
            [2**60, 28, 28],
            fp32_contents=[0] * 784,
        ),
        _case("2**40x0", INVALID, "[N, 28, 28]", "image", "FP32", [2**40, 0, 28], b""),
        _case("5x0", INVALID, "holds no element", "image", "FP32", [5, 0, 28], b""),
        _case("0x2**62", INVALID, "out of range", "image", "FP32", [0, 2**62], b""),
        _case("rank-70", INVALID, "[N, 28, 28]", "image", "FP32", [1] * 70, b"\0" * 4),
        _case("int8-1000", INVALID, "-128..127", "image", "INT8", [2], int_contents=[5, 1000]),
        _case("uint8-999", INVALID, "0..255", "image", "UINT8", [1], uint_contents=[999]),
        _case("fp16", INVALID, "raw_input_contents", "image", "FP16", [1], fp32_contents=[0.5]),
        _case("wrong-field", INVALID, "fp32_contents", *IMAGE, int_contents=[0] * 784),
        _case("raw-and-contents", INVALID, "send one", *IMAGE, NO_IMAGE, fp32_contents=[0]),
        _case("nan", INVALID, "in 0..1", *IMAGE, fp32_contents=[np.nan] * 784),
        _case("65-images", TOO_LARGE, "limit of 64", "image", "FP32", [65, 28, 28], NO_IMAGE * 65),
        _case("bytes-length", INVALID, "runs past", "image_bytes", "BYTES", [1], b"\x63\0\0\0x"),
        _case("absurd", INVALID, "PNG", "image_bytes", "BYTES", [1], bytes_contents=[b"absurd"]),
        _case(
            "300x3-blank",
            INVALID,
            "no digit found",
            "image_bytes",
            "BYTES",
            [1],
            bytes_contents=[_picture(300, 3, ink=False)],
        ),
    ],
)
def test_odd_inputs_get_a_client_status_and_say_what_to_send(stub, args, contents, code, message):
    answer = _answer(stub, _request(*args, **contents))
    assert answer[0] == code and message in answer[1], answer
    assert not any(leak in answer[1] for leak in LEAKS), answer


def test_a_thin_picture_with_ink_is_read_or_refused_not_a_crash(stub):
    for raw in (False, True):
        picture = _picture(300, 3, ink=True)
        request = (
            _request("image_bytes", "BYTES", [1], struct.pack("<I", len(picture)) + picture)
            if raw
            else _request("image_bytes", "BYTES", [1], bytes_contents=[picture])
        )
        code, details = _answer(stub, request)
        assert code in (grpc.StatusCode.OK, INVALID), (code, details)


def test_unknown_model_and_bad_version(stub):
    request = _request("image", "FP32", [1, 28, 28], NO_IMAGE)
    request.model_name = "batch"
    assert _answer(stub, request)[0] == grpc.StatusCode.NOT_FOUND
    request.model_name, request.model_version = "group", "x"
    code, details = _answer(stub, request)
    assert code == INVALID and "is not a number" in details


def test_bytes_that_are_no_protobuf_message_are_invalid_argument(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        for method in ("ModelInfer", "ServerLive"):
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
            with pytest.raises(grpc.RpcError) as error:
                call(b"\xff\xff\xff\xff\x0f", timeout=10)
            assert error.value.code() == INVALID, error.value.details()
            assert "grpc_predict_v2.proto" in error.value.details()


def test_a_message_over_the_upload_limit_is_resource_exhausted(stub):
    """The limit is MNIST_MAX_UPLOAD_BYTES plus a little framing: a picture of that many bytes
    is read (and refused as unreadable), one 128 KiB more never reaches the handler."""
    limit = Settings().max_upload_bytes
    at_limit = _request("image_bytes", "BYTES", [1], bytes_contents=[b"\0" * limit])
    code, details = _answer(stub, at_limit)
    assert code == INVALID and "not a readable image" in details
    over = _request("image_bytes", "BYTES", [1], bytes_contents=[b"\0" * (limit + 128 * 1024)])
    assert _answer(stub, over)[0] == TOO_LARGE


def test_server_metadata_does_not_offer_the_rest_only_binary_extension(stub):
    from tritonclient.grpc import service_pb2 as pb

    metadata = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
    assert metadata.name == "mnist-normalization-serving"
    assert "binary_tensor_data" not in metadata.extensions


# -- a GrpcServer over a fake data plane, in a subprocess ---------------------------------------


def test_a_bug_is_internal_and_the_limits_hold():
    code = (
        "import asyncio, json; from tests.system.test_grpc_limits import checks_on_a_fake_server; "
    )
    code += "print(json.dumps(asyncio.run(checks_on_a_fake_server())))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.splitlines()[-1])
    generic = "internal error (logged); retry, and report it if it persists."
    assert answers["ready"] == ["INTERNAL", generic, {}]
    assert answers["metadata"] == ["INTERNAL", generic, {}]
    assert SECRET in result.stderr  # logged server side
    assert answers["first"] == ["UNAVAILABLE", "queue full; retry later.", {"retry-after": "3"}]
    assert answers["second"][0] == "RESOURCE_EXHAUSTED"  # maximum_concurrent_rpcs
    assert answers["state_after_idle"] == "IDLE"  # grpc.max_connection_idle_ms closed it
    assert answers["options"]["grpc.max_concurrent_streams"] == 100
    assert answers["options"]["grpc.max_receive_message_length"] >= 1024


class _FakeDataPlane:
    """Answers with a bug's exception, or (ModelInfer) an overload after half a second."""

    def ready(self) -> bool:
        raise RuntimeError(SECRET)

    def server_metadata(self) -> dict[str, Any]:
        raise KeyError(SECRET)

    async def infer(self, request: Any) -> Any:
        await asyncio.sleep(0.5)
        raise Overloaded("queue full; retry later.", retry_after_s=3)


async def checks_on_a_fake_server() -> dict[str, Any]:
    """Run in a subprocess: the answers of a GrpcServer allowed one RPC at a time and 300 ms
    of idle connection."""
    from service.grpc import grpc_predict_v2_pb2 as pb
    from service.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
    from service.grpc import server as module

    module.MAX_CONCURRENT_RPCS, module.MAX_CONNECTION_IDLE_MS = 1, 300
    grpc_server = module.GrpcServer(_FakeDataPlane(), "127.0.0.1", 0, 1024)  # type: ignore[arg-type]
    await grpc_server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            answers = {
                "ready": await _status(stub.ServerReady(pb.ServerReadyRequest())),
                "metadata": await _status(stub.ServerMetadata(pb.ServerMetadataRequest())),
            }
            first = asyncio.ensure_future(_status(stub.ModelInfer(pb.ModelInferRequest())))
            await asyncio.sleep(0.2)
            answers["second"] = await _status(stub.ModelInfer(pb.ModelInferRequest()))
            answers["first"] = await first
            await asyncio.sleep(1.5)
            answers["state_after_idle"] = channel.get_state().name
    finally:
        await grpc_server.stop(0)
    return answers | {"options": dict(module.server_options(1024))}


async def _status(call: Any) -> list[Any]:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        trailing = {key: value for key, value in (error.trailing_metadata() or ())}
        return [error.code().name, error.details(), trailing]
    return ["OK", "", {}]


def test_every_kind_of_error_has_its_grpc_status():
    """One table maps each kind of ServiceError to a gRPC status (in a subprocess: the
    service's protobuf module and tritonclient's cannot share one process)."""
    code = (
        "from service import errors; from service.grpc.server import GRPC_STATUS; "
        "kinds = [k for k in vars(errors).values() if isinstance(k, type) "
        "and issubclass(k, errors.ServiceError) and k is not errors.ServiceError]; "
        "print(sorted(k.__name__ for k in kinds if k not in GRPC_STATUS))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
