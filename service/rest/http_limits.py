"""The HTTP server's own limits: how large a request's headers may be, how long a connection
may take to send them, and how many connections a worker takes on.

uvicorn's httptools protocol has none of the first two: a 50 MB header block is read and
answered, an unfinished one held in memory as long as its socket stays open, and a socket that
sends nothing is kept for ever, so that a few dozen silent sockets exhaust a worker's file
descriptors. `BoundedHeadersProtocol` is that protocol with both bounds (`bounded_protocol`
is what uvicorn's `http=` takes); `connection_limit` bounds connections by the descriptors the
process has.
"""

from __future__ import annotations

import asyncio
import functools
import json
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from service.settings import Settings

# File descriptors kept for what is not a client connection: model files, the metrics and
# workers' shared files, the gRPC server, logging, the models directory's poller.
RESERVED_DESCRIPTORS = 64


class BoundedHeadersProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 (and closing) when a request's headers
    exceed `max_header_bytes`, and 408 (closing) to a connection that has not sent a whole
    request's headers within `header_timeout_s` of opening or of the request's first byte
    (between requests uvicorn's keep-alive timeout closes it)."""

    def __init__(
        self, *args: Any, max_header_bytes: int, header_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes, self._header_timeout_s = max_header_bytes, header_timeout_s
        self._header_bytes: int | None = 0  # None: this request's headers are complete
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # a socket that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # the parser's callbacks run first: on_headers_complete
        if self._header_bytes is None or self.transport.is_closing():
            return
        self._header_bytes += len(data)
        if self._header_bytes > self._max_header_bytes:
            self._refuse(
                431,
                f"the request's headers exceed {self._max_header_bytes} bytes "
                "(MNIST_MAX_HEADER_BYTES): send fewer or shorter headers.",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._header_bytes = None
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._refuse(
                408,
                f"no complete request headers within {self._header_timeout_s:g} s "
                "(MNIST_HEADER_TIMEOUT_S).",
            )

    def _refuse(self, status: int, message: str) -> None:
        self._disarm_header_timer()
        body = json.dumps({"error": message}).encode() + b"\n"
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


def bounded_protocol(settings: Settings) -> Callable[..., BoundedHeadersProtocol]:
    """The protocol class for uvicorn's `http=`, with the settings' bounds."""
    return functools.partial(
        BoundedHeadersProtocol,
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
    )


def connection_limit() -> int | None:
    """Connections (and their requests) one worker takes on before answering 503: what its
    descriptor limit leaves after RESERVED_DESCRIPTORS; None when the limit is unbounded."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(8, soft - RESERVED_DESCRIPTORS)
