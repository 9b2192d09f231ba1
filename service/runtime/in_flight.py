"""The requests in flight: what a worker tells its siblings while it runs.

`InFlight` counts the prediction requests a worker is handling. With several workers each also
publishes its count on an `InFlightBoard`, a small file every worker maps, so that a worker can
tell whether the whole service (not only itself) is idle: only then may a lone request spread
its inference over the machine's cores (`service.runtime.batching`) without taking them from
a sibling.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import time
from pathlib import Path

# Slots on the board: more than any machine's worker count. A worker that exits (or dies)
# releases its slot's lock, and the worker started in its place takes the slot over.
BOARD_SLOTS = 64
_BOARD_BYTES = BOARD_SLOTS * 2 * 8  # a count and a time (int64 each) per slot
# A sibling worker active this recently is taken to be serving a client whose next request
# may come at any moment: a lone request then keeps to one core rather than contend with it
# (a thread of a split inference preempted mid-operator stalls the whole run).
OTHER_WORKERS_QUIET_S = 0.01


class InFlightBoard:
    """Every worker's requests in flight and when that count last changed, in
    `directory/in_flight.board`: a slot per worker (two int64s, counts first, then times),
    written only by its owner, read by all. A worker owns the slot whose lock file
    (`worker-<slot>.lock`) it holds: the lock goes with the process, so a worker started after
    another exited takes its slot over, and resets it."""

    def __init__(self, directory: Path) -> None:
        self._lock_fd, self.slot = _claim_slot(directory)
        board_fd = os.open(directory / "in_flight.board", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(board_fd).st_size < _BOARD_BYTES:
                os.ftruncate(board_fd, _BOARD_BYTES)  # zero-filled; every worker agrees
            self._map = mmap.mmap(board_fd, _BOARD_BYTES)
        finally:
            os.close(board_fd)
        board = memoryview(self._map).cast("q")
        self._counts, self._times = board[:BOARD_SLOTS], board[BOARD_SLOTS:]
        self._counts[self.slot] = self._times[self.slot] = 0  # a dead predecessor's, if any

    def publish(self, count: int) -> None:
        # Aligned 8-byte stores: a reader never sees half of one.
        self._counts[self.slot] = count
        self._times[self.slot] = time.monotonic_ns()  # one clock for every process

    def others_quiet(self, quiet_s: float) -> bool:
        """No other worker has a request in flight, nor had one in the last `quiet_s`."""
        if sum(self._counts) != self._counts[self.slot]:
            return False
        since = time.monotonic_ns() - int(quiet_s * 1e9)
        before, after = self._times[: self.slot], self._times[self.slot + 1 :]
        return max(before, default=0) < since and max(after, default=0) < since

    def close(self) -> None:
        self._counts[self.slot] = 0
        for view in (self._counts, self._times):
            view.release()
        self._map.close()
        os.close(self._lock_fd)


def _claim_slot(directory: Path) -> tuple[int, int]:
    for slot in range(BOARD_SLOTS):
        fd = os.open(directory / f"worker-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd, slot
    raise RuntimeError(f"all {BOARD_SLOTS} worker slots in {directory} are taken")


class InFlight:
    """How many prediction requests this worker is handling right now (any stage), published
    on the workers' board when there is one."""

    def __init__(self, board: InFlightBoard | None = None) -> None:
        self.count = 0
        self._board = board

    def __enter__(self) -> InFlight:
        self.count += 1
        if self._board is not None:
            self._board.publish(self.count)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1
        if self._board is not None:
            self._board.publish(self.count)

    def other_workers_quiet(self) -> bool:
        """No other worker is serving or has just served a request (true for a single
        worker): the machine's other cores are idle."""
        return self._board is None or self._board.others_quiet(OTHER_WORKERS_QUIET_S)

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None
