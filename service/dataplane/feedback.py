"""Corrections from users (`POST /feedback`): checked, rate-limited per client, counted and
kept in MNIST_FEEDBACK_DIR for `mnist-train --corrections`.

Bounded like every request: the picture is a 28x28 PNG of at most MAX_INPUT_CHARS of base64
(what `return_input=true` hands back), each client address may send MNIST_FEEDBACK_PER_MINUTE
a minute (the clients remembered are bounded too), and the directory holds at most
MNIST_FEEDBACK_MAX_CORRECTIONS. The uploaded photo is never kept: only the model's input.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import math
import time
from collections import OrderedDict, deque

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_shared.corrections import Correction, save_correction
from mnist_shared.preprocessing import IMAGE_SIZE
from service.errors import BadRequest, NotFound, NotReady, TooManyRequests
from service.metrics import Metrics
from service.settings import Settings

MAX_INPUT_CHARS = 8192  # a 28x28 PNG in base64 is 300-1,500 characters
WINDOW_S = 60.0
MAX_CLIENTS = 10_000  # client addresses remembered for the rate limit; the oldest forgotten


class FeedbackStore:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._directory = settings.feedback_dir
        self._per_minute = settings.feedback_per_minute
        self._most = settings.feedback_max_corrections
        self._metrics = metrics
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        self._kept = self._count() if self._directory else 0

    @property
    def enabled(self) -> bool:
        return self._directory is not None

    def keep(
        self, client: str, picture: str, label: int, variant: str, versions: dict[str, int]
    ) -> str:
        """Check and store one correction; the name it was kept under."""
        if self._directory is None:
            raise_off()
        self._admit(client)
        if self._kept >= self._most:
            raise NotReady(
                f"the feedback store holds {self._kept} corrections, its limit "
                "(MNIST_FEEDBACK_MAX_CORRECTIONS): move them away after training, then retry."
            )
        pixels = _decode_input(picture)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        path = save_correction(self._directory, Correction(pixels, label, variant, versions, when))
        self._kept += 1
        self._metrics.feedback.labels(variant=variant).inc()
        return path.name

    def _admit(self, client: str) -> None:
        now = time.monotonic()
        sent = self._recent.pop(client, deque())
        while sent and sent[0] < now - WINDOW_S:
            sent.popleft()
        self._recent[client] = sent  # most recent last: the oldest are forgotten first
        while len(self._recent) > MAX_CLIENTS:
            self._recent.popitem(last=False)
        if len(sent) >= self._per_minute:
            retry = max(1, math.ceil(sent[0] + WINDOW_S - now))
            raise TooManyRequests(
                f"{len(sent)} corrections from {client} in the last minute, the limit "
                f"(MNIST_FEEDBACK_PER_MINUTE={self._per_minute}); retry in {retry} s.",
                retry_after_s=retry,
            )
        sent.append(now)

    def _count(self) -> int:
        assert self._directory is not None
        self._directory.mkdir(parents=True, exist_ok=True)
        return sum(1 for _ in self._directory.glob("*.json"))


def raise_off() -> None:
    raise NotFound(
        "feedback is off on this server: its operator sets MNIST_FEEDBACK_DIR to a directory "
        "to keep corrections in."
    )


def _decode_input(picture: str) -> np.ndarray:
    """The 28x28 picture the model read, from `return_input`'s base64 PNG."""
    if len(picture) > MAX_INPUT_CHARS:
        raise BadRequest(
            f"input holds {len(picture)} characters; send the 28x28 PNG that "
            f"return_input=true gave (at most {MAX_INPUT_CHARS})."
        )
    try:
        image = Image.open(io.BytesIO(base64.b64decode(picture, validate=True)), formats=["PNG"])
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"it is {image.width}x{image.height}")
        return np.asarray(image.convert("L"), np.uint8)
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as error:
        raise BadRequest(
            f"input is not a 28x28 PNG in base64 ({error}); send the picture return_input=true "
            "gave for the prediction you correct."
        ) from None
