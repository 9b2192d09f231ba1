"""multipart/form-data bodies, already read and size-checked, split into their parts in memory.

python-multipart's `MultipartParser` does the parsing; its callbacks here only collect bytes.
Starlette's form parser would also spool every file part into a `SpooledTemporaryFile` wrapped in
an `UploadFile` (a fifth of the event loop's time per one-image request, measured with py-spy):
pointless for a body that is in memory already and bounded by MNIST_MAX_UPLOAD_BYTES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import (
    MAX_BOUNDARY_LENGTH,
    MultipartParser,
    parse_options_header,
)

from service.errors import BadRequest, PayloadTooLarge


@dataclass
class Part:
    name: str = ""
    filename: str | None = None  # None: a text field, not a file upload
    data: bytearray = field(default_factory=bytearray)


def parse_multipart(
    content_type: str, body: bytes, max_parts: int, on_part: Callable[[Part], None] | None = None
) -> list[Part]:
    """Every part of `body`, in order. BadRequest when malformed; PayloadTooLarge over
    `max_parts` parts. `on_part` sees each part as soon as it is complete: an error it raises
    stops the parsing there."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest(
            "malformed multipart body (no boundary in the Content-Type header): let the HTTP "
            "client build it (curl -F file=@digit.png)."
        )
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise BadRequest(
            f"malformed multipart body (its boundary is {len(boundary)} characters, over the "
            f"{MAX_BOUNDARY_LENGTH} allowed): let the HTTP client build it "
            "(curl -F file=@digit.png)."
        )
    collector = _PartCollector(max_parts, on_part)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise BadRequest(f"malformed multipart body ({error}).") from None
    if collector.open_part:
        raise BadRequest("malformed multipart body (it ends inside a part): send it complete.")
    return collector.parts


class _PartCollector:
    """python-multipart callbacks that build `Part`s."""

    def __init__(self, max_parts: int, on_part: Callable[[Part], None] | None) -> None:
        self.parts: list[Part] = []
        self._on_part = on_part
        self.open_part = False
        self._max_parts = max_parts
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _begin(self) -> None:
        if len(self.parts) >= self._max_parts:
            raise PayloadTooLarge(
                f"the request holds more than {self._max_parts} multipart parts. Split it into "
                "several requests."
            )
        self.parts.append(Part())
        self.open_part, self._disposition = True, b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data += data[start:end]

    def _end(self) -> None:
        self.open_part = False
        if self._on_part is not None:
            self._on_part(self.parts[-1])

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest(
                'malformed multipart body (a part has no Content-Disposition "name"): name '
                "each image part file (curl -F file=@digit.png)."
            )
        part = self.parts[-1]
        part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")
