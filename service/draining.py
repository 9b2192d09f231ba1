"""SIGTERM: answer every request already sent, then let uvicorn shut down.

uvicorn's shutdown closes the listening socket at once (connections still in the kernel's
accept queue are reset) and closes every connection without a request in progress, including
one whose request has reached the socket but not been read yet. So before handing SIGTERM on,
the worker keeps accepting and reading until requests stop arriving for `QUIET_S` (bounded by
a share of the grace): what clients sent before the signal is then in progress, and uvicorn
waits for it. Readiness turns 503 at the signal, so load balancers stop sending new work.
What else serves requests (the gRPC server) starts its own graceful stop at the signal too,
with the same grace, so that the whole shutdown fits in it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from types import FrameType

from service.dataplane.dataplane import DataPlane

logger = logging.getLogger(__name__)

# Requests that reached the socket before the signal arrive within milliseconds on an idle
# event loop; a loop busy with other requests may take a few hundred.
QUIET_S = 0.3
# The wait for quiet takes at most this share of MNIST_SHUTDOWN_GRACE_S.
MOST_OF_GRACE = 0.3


class Arrivals:
    """How many HTTP requests this worker has received (counted by the front door)."""

    def __init__(self) -> None:
        self.count = 0


def drain_on_sigterm(
    dataplane: DataPlane,
    arrivals: Arrivals,
    grace_s: float,
    also_stop: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Chain a SIGTERM handler in front of uvicorn's (see the module's docstring); at the
    signal, `also_stop(grace_s)` starts too. Only in the main thread: where signals are
    delivered."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    background: set[asyncio.Task[None]] = set()  # held until done (the loop holds weak refs)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if dataplane.draining:  # a second SIGTERM: shut down now
            _hand_on(previous, signum)
            return
        dataplane.draining = True
        logger.info("SIGTERM: not ready any more; finishing the accepted requests")
        if also_stop is not None:
            stopping = loop.create_task(also_stop(grace_s))
            background.add(stopping)
            stopping.add_done_callback(background.discard)
        wait = _until_quiet(arrivals, MOST_OF_GRACE * grace_s)
        task = loop.create_task(wait)
        task.add_done_callback(lambda _: _hand_on(previous, signum))

    signal.signal(signal.SIGTERM, on_sigterm)


async def _until_quiet(arrivals: Arrivals, most_s: float) -> None:
    """Return once no request has arrived for QUIET_S, or after `most_s`."""
    started = last_change = time.monotonic()
    seen = arrivals.count
    while (now := time.monotonic()) - started < most_s and now - last_change < QUIET_S:
        await asyncio.sleep(QUIET_S / 10)
        if arrivals.count != seen:
            seen, last_change = arrivals.count, time.monotonic()


def _hand_on(previous: Callable[[int, FrameType | None], object] | int | None, signum: int) -> None:
    if callable(previous):
        previous(signum, None)
    elif previous == signal.SIG_DFL:  # nobody else listens: exit as the signal would
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
