"""Worker processes: how many to run, and what they tell each other while they run.

`InFlight` counts the prediction requests a worker is handling. With several workers each also
publishes its count on an `InFlightBoard`, a small file every worker maps, so that a worker can
tell whether the whole service (not only itself) is idle: only then may a lone request spread
its inference over the machine's cores (`service.batching`) without taking them from a sibling.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# Slots on the board: more than any machine's worker count. A worker that exits (or dies)
# releases its slot's lock, and the worker started in its place takes the slot over.
BOARD_SLOTS = 64
_SLOT = 8  # bytes: one int64 count


def available_cpus() -> int:
    """CPUs this process may use: its CPU affinity, capped by the cgroup v2 quota (what
    `docker run --cpus` and Kubernetes CPU limits set), at least 1. One worker per CPU is the
    default: on a 2-core machine two workers served more requests than one (README)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class InFlightBoard:
    """Every worker's count of requests in flight, in `directory/in_flight.board` (one int64
    slot per worker, written only by its owner, read by all). A worker owns the slot whose lock
    file (`worker-<slot>.lock`) it holds: the lock goes with the process, so a worker started
    after another exited takes over its slot, and resets it."""

    def __init__(self, directory: Path) -> None:
        self._lock_fd, self.slot = _claim_slot(directory)
        board_fd = os.open(directory / "in_flight.board", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(board_fd).st_size < BOARD_SLOTS * _SLOT:
                os.ftruncate(board_fd, BOARD_SLOTS * _SLOT)  # zero-filled; every worker agrees
            self._map = mmap.mmap(board_fd, BOARD_SLOTS * _SLOT)
        finally:
            os.close(board_fd)
        self._counts = memoryview(self._map).cast("q")
        self._counts[self.slot] = 0  # a dead predecessor's count, if any

    def publish(self, count: int) -> None:
        self._counts[self.slot] = count  # one aligned 8-byte store: readers never see half

    def total(self) -> int:
        return sum(self._counts)

    def close(self) -> None:
        self._counts[self.slot] = 0
        self._counts.release()
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

    def elsewhere(self) -> int:
        """Requests in flight in the other workers (0 with a single worker)."""
        return self._board.total() - self.count if self._board is not None else 0

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None
