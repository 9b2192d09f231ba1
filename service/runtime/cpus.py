"""How many CPUs this process may use: the default number of worker processes."""

from __future__ import annotations

import os
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may use: its CPU affinity, capped by the cgroup v2 quota (what
    `docker run --cpus` and Kubernetes CPU limits set), at least 1. One worker per CPU is the
    default: on a 2-core machine two workers served more requests than one
    (docs/performance-log.md)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) // int(period))
    except (OSError, ValueError):
        pass
    return max(1, cpus)
