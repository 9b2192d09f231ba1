"""Load shedding: a bound on the images admitted for inference and not yet answered.

Under overload an unbounded queue makes every client slower; with the bound, the requests that
would wait too long are answered at once with 503 and a `Retry-After` estimated from how fast
the queue drains, which is what load balancers and clients retry on (as Triton, Ray Serve and
BentoML do). One image counts once per variant it goes through (`variant=all` counts three),
and a picture read as a number counts once per digit found in it, once they are found.
"""

from __future__ import annotations

import math
import time
from collections import deque

from service.errors import Overloaded

_RATE_WINDOW_S = 2.0  # how far back the drain rate looks


class Admission:
    def __init__(self, max_queued_images: int) -> None:
        self.max_queued_images = max_queued_images
        self.queued = 0  # admitted image-inferences not yet answered
        self._answered: deque[tuple[float, int]] = deque()  # (time, images) of recent answers

    @property
    def full(self) -> bool:
        return self.queued >= self.max_queued_images

    def check_room(self) -> None:
        """Before reading a request: shed it at once (no decoding) when the queue is full."""
        if self.full:
            raise self.overloaded()

    def admit(self, images: int) -> None:
        """Admit `images` image-inferences or raise Overloaded. A request larger than the whole
        bound still gets in when nothing is queued, so that it can ever be served."""
        if self.queued and self.queued + images > self.max_queued_images:
            raise self.overloaded()
        self.queued += images

    def grow(self, images: int, held: int) -> None:
        """`images` more for a request already holding `held` (reading numbers finds more
        digits than pictures); Overloaded past the bound, unless that request is alone."""
        if images <= 0:
            return
        if self.queued > held and self.queued + images > self.max_queued_images:
            raise self.overloaded()
        self.queued += images

    def release(self, images: int) -> None:
        self.queued -= images
        now = time.monotonic()
        self._answered.append((now, images))
        while self._answered and self._answered[0][0] < now - _RATE_WINDOW_S:
            self._answered.popleft()

    def retry_after_s(self) -> int:
        """Whole seconds until the current queue should have drained (at least 1)."""
        if not self._answered:
            return 1
        elapsed = max(time.monotonic() - self._answered[0][0], 0.1)
        rate = sum(images for _, images in self._answered) / elapsed
        return max(1, math.ceil(self.queued / rate)) if rate > 0 else 1

    def overloaded(self) -> Overloaded:
        retry = self.retry_after_s()
        return Overloaded(
            f"the service is at capacity ({self.queued} images waiting for inference, "
            f"MNIST_MAX_QUEUED_IMAGES={self.max_queued_images}); retry in {retry} s.",
            retry_after_s=retry,
        )


class Admitted:
    """One request's share of the bound, from admission to its answer."""

    def __init__(self, admission: Admission, images: int) -> None:
        admission.admit(images)
        self._admission, self.images = admission, images

    def grow(self, images: int) -> None:
        """`images` more (reading numbers found more digits than pictures)."""
        self._admission.grow(images, held=self.images)
        self.images += max(images, 0)
