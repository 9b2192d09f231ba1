"""The Open Inference Protocol's gRPC service, on the same data plane and batchers as REST.

`GrpcServer` runs a `grpc.aio` server in the app's event loop, started and stopped by the
app's lifespan, on `MNIST_GRPC_PORT` (0: off). Protocol errors map to INVALID_ARGUMENT,
NOT_FOUND and UNAVAILABLE with the messages REST sends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np

from service.dataplane import DataPlane
from service.errors import BadRequest, GatewayTimeout, NotFound, NotReady, ServiceError
from service.v2_grpc import grpc_predict_v2_pb2 as pb
from service.v2_grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from service.v2_tensors import (
    NUMPY_DATATYPES,
    Tensor,
    array_from_bytes,
    check_datatype,
    infer,
    parse_version,
    raw_bytes,
    split_bytes_elements,
)

logger = logging.getLogger(__name__)

# Typed contents fields of InferTensorContents, by protocol datatype.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_STATUS = {
    BadRequest.status_code: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound.status_code: grpc.StatusCode.NOT_FOUND,
    NotReady.status_code: grpc.StatusCode.UNAVAILABLE,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    GatewayTimeout.status_code: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (protocol names)
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        async with _status_on_error(context):
            ready = self._dataplane.model_ready(request.name, parse_version(request.version))
            return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(**self._dataplane.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async with _status_on_error(context):
            metadata = self._dataplane.model_metadata(request.name, parse_version(request.version))
            tensors = {
                key: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in metadata[key]]
                for key in ("inputs", "outputs")
            }
            return pb.ModelMetadataResponse(
                name=metadata["name"],
                versions=metadata["versions"],
                platform=metadata["platform"],
                **tensors,
            )

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        async with _status_on_error(context):
            async with self._dataplane.request(request.model_name):
                inputs = _input_tensors(request)
                requested = [output.name for output in request.outputs]
                result, outputs = await infer(
                    self._dataplane,
                    request.model_name,
                    parse_version(request.model_version),
                    inputs,
                    requested,
                )
            response = pb.ModelInferResponse(
                model_name=request.model_name, model_version=str(result.version), id=request.id
            )
            for key, value in request.parameters.items():
                response.parameters[key].CopyFrom(value)
            for tensor in outputs:
                response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                response.raw_output_contents.append(raw_bytes(tensor))
            return response


@asynccontextmanager
async def _status_on_error(context: Any) -> AsyncIterator[None]:
    """Maps a ServiceError to the gRPC status the protocol asks for, with the same message."""
    try:
        yield
    except ServiceError as error:
        await context.abort(_STATUS.get(error.status_code, grpc.StatusCode.INTERNAL), error.message)


def _input_tensors(request: Any) -> list[Tensor]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one per input "
            "or none."
        )
    tensors = []
    for index, item in enumerate(request.inputs):
        shape, datatype = list(item.shape), item.datatype
        check_datatype(item.name, datatype)
        if raw:
            data: np.ndarray | list[bytes] = (
                split_bytes_elements(raw[index], item.name)
                if datatype == "BYTES"
                else array_from_bytes(raw[index], datatype, shape, item.name)
            )
        else:
            values = list(getattr(item.contents, _CONTENTS_FIELD.get(datatype, "bytes_contents")))
            data = values if datatype == "BYTES" else np.asarray(values, NUMPY_DATATYPES[datatype])
        tensors.append(Tensor(item.name, datatype, shape, data))
    return tensors


class GrpcServer:
    """The gRPC front door's lifetime: `start()` in the app's lifespan, `stop()` at its end."""

    def __init__(self, dataplane: DataPlane, host: str, port: int, max_message_bytes: int) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._server = grpc.aio.server(options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(dataplane), self._server
        )
        self.address = f"{host}:{port}"
        try:
            self.port = self._server.add_insecure_port(self.address)
        except RuntimeError:  # grpc says only "Failed to bind"
            raise RuntimeError(
                f"gRPC cannot listen on {self.address}: the port is in use or not allowed. Set "
                "MNIST_GRPC_PORT to a free port, or to 0 to turn gRPC off."
            ) from None

    async def start(self) -> None:
        await self._server.start()
        logger.info("gRPC (Open Inference Protocol) on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        await self._server.stop(grace_s)
