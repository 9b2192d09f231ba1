"""The event loop's lag: how late a timer fires, measured continuously into a histogram.

Every connection, probe and gRPC call of a worker waits for its event loop; work that holds
the loop (a long step, a thread holding the GIL, a starved CPU) shows up as lag. Operators
alert on it (`mnist_event_loop_lag_seconds`), and benchmarks/hostile.py bounds it per attack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LAG_INTERVAL_S = 0.02  # 50 wakeups a second: a few microseconds of CPU each


async def watch_loop_lag(observe: Callable[[float], None]) -> None:
    """Until cancelled: sleep LAG_INTERVAL_S, observe how much later than due it woke."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_INTERVAL_S
        await asyncio.sleep(LAG_INTERVAL_S)
        observe(max(0.0, loop.time() - due))
