"""The service's error hierarchy, independent of the wire: each class is a kind of error, and
its message tells the client what to do. `status_code` is the kind's HTTP status, the status
vocabulary of REST's answers (`service.rest.responses`) and of the request metrics; gRPC maps
each kind to its own status in one table (`service.grpc.server.GRPC_STATUS`)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: `status_code` is the HTTP status, the message tells the client what to do."""

    status_code = 500
    headers: dict[str, str] | None = None  # extra response headers (Retry-After, ...)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """The request is malformed: not an image, wrong JSON shape, unknown variant..."""

    status_code = 400


class Unauthorized(ServiceError):
    """An admin endpoint called without the bearer token it requires."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ServiceError):
    """An admin endpoint called with the wrong bearer token."""

    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    """The request cannot be carried out in this deployment's current shape."""

    status_code = 409


class PayloadTooLarge(ServiceError):
    """Body, image or image count over a configured limit."""

    status_code = 413


class UnsupportedMediaType(ServiceError):
    status_code = 415


class BackendUnavailable(ServiceError):
    """The backend exists but is not installed in this deployment (e.g. no TensorFlow)."""

    status_code = 501


class NoDigit(ServiceError):
    """The picture decodes but holds no digit (a blank canvas, a uniform photo)."""

    status_code = 422


class NotADigit(ServiceError):
    """`strict=true`, and no picture looks like one handwritten digit."""

    status_code = 422


class TooManyRequests(ServiceError):
    """A client sent more than its share (of corrections, say): retry after `Retry-After`."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class NotReady(ServiceError):
    """Models are still loading, or failed to load."""

    status_code = 503


class Overloaded(ServiceError):
    """Too many images already wait for inference: retry after `Retry-After` seconds."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class GatewayTimeout(ServiceError):
    """The request was not answered within MNIST_REQUEST_TIMEOUT_S."""

    status_code = 504


class ClientClosedRequest(ServiceError):
    """The client disconnected before sending its whole body (nginx's 499): nobody to answer."""

    status_code = 499


class InferenceFailed(ServiceError):
    """The model failed on a batch; every request of that batch gets this error."""

    status_code = 500
