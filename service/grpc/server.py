"""The Open Inference Protocol's gRPC service, on the same data plane and batchers as REST.

`GrpcServer` runs a `grpc.aio` server in the app's event loop, started and stopped by the
app's lifespan, on `MNIST_GRPC_PORT` (0: off). Every kind of `ServiceError` maps to a gRPC
status in `GRPC_STATUS` (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, NOT_FOUND, UNAVAILABLE, ...) with
the message REST sends; anything else is a bug: INTERNAL with a generic message, the details
logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.dataplane.dataplane import DataPlane
from service.dataplane.inference import InferenceRequest, parse_version
from service.dataplane.tensors import (
    output_tensors,
    raw_bytes,
)
from service.errors import (
    BackendUnavailable,
    BadRequest,
    ClientClosedRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    InferenceFailed,
    NoDigit,
    NotADigit,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from service.grpc import grpc_predict_v2_pb2 as pb
from service.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from service.grpc.tensors import images_of, precision_of

logger = logging.getLogger(__name__)

# -- server limits (channel arguments of grpc.aio.server) -------------------------------------
# A connection without any RPC for 5 minutes is closed (GOAWAY): idle clients cannot pin
# sockets and their memory forever; a client's channel reconnects by itself on its next call.
MAX_CONNECTION_IDLE_MS = 5 * 60 * 1000
# RPCs one connection may have open at once (HTTP/2 streams); more wait on the client's side.
MAX_CONCURRENT_STREAMS = 100
# RPCs the whole server runs at once, all connections together: each may hold a message of up
# to the upload limit (16 MiB by default), so this bounds their memory (~2 GiB). Beyond it gRPC
# answers RESOURCE_EXHAUSTED at once, before reading the request; the data plane's own queue
# bound (MNIST_MAX_QUEUED_IMAGES: UNAVAILABLE) usually sheds long before.
MAX_CONCURRENT_RPCS = 128
# Messages may be as large as the REST body limit (MNIST_MAX_UPLOAD_BYTES) plus the protobuf
# framing around the data (tensor names, shapes, parameters); larger: RESOURCE_EXHAUSTED.
MESSAGE_OVERHEAD_BYTES = 64 * 1024
# Keepalive: the server pings a connection with RPCs in flight after 1 minute of silence and
# drops it when the ping is not answered within 20 s (a vanished client frees its RPC slots).
KEEPALIVE_TIME_MS = 60 * 1000
KEEPALIVE_TIMEOUT_MS = 20 * 1000
# Clients may ping at most every 30 s, and only while they have RPCs in flight (an idle
# connection is closed by MAX_CONNECTION_IDLE_MS, not kept open by pings); after
# MAX_PING_STRIKES pings outside these terms the connection gets GOAWAY "too_many_pings".
MIN_CLIENT_PING_INTERVAL_MS = 30 * 1000
PERMIT_KEEPALIVE_WITHOUT_CALLS = 0
MAX_PING_STRIKES = 2

# The REST-only extension of the protocol (binary data after a JSON header); gRPC's tensors
# are binary by nature, and the extension does not apply to them.
REST_ONLY_EXTENSIONS = frozenset({"binary_tensor_data"})
INTERNAL_MESSAGE = "internal error (logged); retry, and report it if it persists."

# The gRPC status of each kind of error: the client's input is INVALID_ARGUMENT, a limit
# RESOURCE_EXHAUSTED, a service that cannot answer now UNAVAILABLE.
GRPC_STATUS: dict[type[ServiceError], grpc.StatusCode] = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NoDigit: grpc.StatusCode.INVALID_ARGUMENT,
    NotADigit: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    TooManyRequests: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    ClientClosedRequest: grpc.StatusCode.CANCELLED,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.UNAVAILABLE,
    GatewayTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    BackendUnavailable: grpc.StatusCode.UNIMPLEMENTED,
    InferenceFailed: grpc.StatusCode.INTERNAL,
}


def grpc_status(error: ServiceError) -> grpc.StatusCode:
    """The gRPC status of an error's kind (its nearest listed class)."""
    for kind in type(error).__mro__:
        if kind in GRPC_STATUS:
            return GRPC_STATUS[kind]
    return grpc.StatusCode.INTERNAL


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """grpc.aio.server's channel arguments (see the constants above)."""
    message_limit = max_message_bytes + MESSAGE_OVERHEAD_BYTES
    return [
        ("grpc.max_receive_message_length", message_limit),
        ("grpc.max_send_message_length", message_limit),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", PERMIT_KEEPALIVE_WITHOUT_CALLS),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


class _Undecodable:
    """Stands for a request whose bytes do not parse as the method's protobuf message."""

    message = (
        "the request does not parse as this method's protobuf message; build it from the "
        "protocol's grpc_predict_v2.proto."
    )


@functools.cache
def _lenient(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or whatever else the client's bytes cause
            return _Undecodable()

    return deserialize


class _LenientRequests(grpc.aio.ServerInterceptor):
    """Hands a request that does not parse to its handler (which answers INVALID_ARGUMENT),
    instead of gRPC's own UNKNOWN with the parser's exception text."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return handler._replace(request_deserializer=_lenient(handler.request_deserializer))


_Handler = Callable[[Any, Any, Any], Awaitable[Any]]


def _with_status(handler: _Handler) -> _Handler:
    """A ServiceError becomes its gRPC status with its message; any other exception INTERNAL
    with a generic message (the details go to the log, not to the client)."""

    @functools.wraps(handler)
    async def guarded(self: Any, request: Any, context: Any) -> Any:
        try:
            if isinstance(request, _Undecodable):
                raise BadRequest(request.message)
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except ServiceError as error:
            await context.abort(grpc_status(error), error.message, _trailing_metadata(error))
        except Exception:
            logger.exception("unhandled error in gRPC %s", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    return guarded


def _trailing_metadata(error: ServiceError) -> tuple[tuple[str, str], ...]:
    """Retry-After (Overloaded) as trailing metadata, for clients that honour it."""
    retry_after = (error.headers or {}).get("Retry-After")
    return (("retry-after", retry_after),) if retry_after else ()


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    @_with_status
    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (protocol names)
        return pb.ServerLiveResponse(live=True)

    @_with_status
    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    @_with_status
    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        ready = self._dataplane.model_ready(request.name, parse_version(request.version))
        return pb.ModelReadyResponse(ready=ready)

    @_with_status
    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        metadata = self._dataplane.server_metadata()
        extensions = [e for e in metadata["extensions"] if e not in REST_ONLY_EXTENSIONS]
        return pb.ServerMetadataResponse(**(metadata | {"extensions": extensions}))

    @_with_status
    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
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

    @_with_status
    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        answer = await self._dataplane.infer(
            InferenceRequest(
                read_images=functools.partial(images_of, request),
                model=request.model_name,
                version=request.model_version,
                whole=True,
                precision=functools.partial(precision_of, request),
            )
        )
        (result,) = answer.results
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=str(result.version), id=request.id
        )
        # What the service knows of the answer, not the client's parameters echoed back.
        response.parameters["precision"].string_param = result.precision
        requested = [output.name for output in request.outputs]
        for tensor in output_tensors(result, requested, answer):
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(raw_bytes(tensor))
        return response


class GrpcServer:
    """The gRPC server's lifetime: `start()` in the app's lifespan, `stop()` at its end."""

    def __init__(self, dataplane: DataPlane, host: str, port: int, max_message_bytes: int) -> None:
        self._server = grpc.aio.server(
            interceptors=[_LenientRequests()],
            options=server_options(max_message_bytes),
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        )
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
