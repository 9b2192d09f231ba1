"""Request bodies the tests and benchmarks send: a sample digit, multipart bodies, hostile
pictures."""

from __future__ import annotations

import io
import re


def sample_png(data_dir: str | None) -> bytes:
    import numpy as np
    from PIL import Image

    if data_dir:
        from training.data import load_idx_directory

        digit = load_idx_directory(data_dir).test_images[0]
    else:  # a synthetic "1" when no MNIST copy is around
        digit = np.zeros((28, 28), np.uint8)
        digit[4:24, 13:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(images: list[bytes], content_type: str = "image/png") -> tuple[bytes, str]:
    """A multipart/form-data body of parts named `file`, and its Content-Type."""
    boundary = "mnistbenchboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(images)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def progressive_jpeg(side: int, scans: int) -> bytes:
    """A progressive JPEG with its last scan repeated up to `scans` scans (libjpeg walks
    every block of the picture once per scan)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side), 200).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last = data[[m.start() for m in re.finditer(rb"\xff\xda", data)][-1] : -2]
    return data[:-2] + last * (scans - 6) + b"\xff\xd9"
