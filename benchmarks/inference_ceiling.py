"""What the hardware allows: images/s of a served model in a tight loop, no HTTP, no decoding.

One process per core, each a single-threaded onnxruntime session running batches of the
service's size (MNIST_MAX_BATCH_SIZE's default, 8) for `seconds`; their rates added up. The
service's requests/s at one image a request, divided by this, is how much of the machine its
serving path leaves to the model (`benchmarks.framework_peers` prints that share).

    python -m benchmarks.inference_ceiling [--seconds 5]   # every committed model and precision
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import time
from pathlib import Path

from devtools.committed import committed_models
from service.runtime.cpus import available_cpus
from service.settings import Settings

BATCH = Settings.model_fields["max_batch_size"].default


def _images_per_second(model_file: str, batch: int, seconds: float) -> float:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
    for _ in range(20):  # warm-up
        session.run(None, {"image": images})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"image": images})
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def ceiling(model_file: Path, batch: int = BATCH, seconds: float = 5.0) -> float:
    """Images/s of `model_file` over every core, a single-threaded process each."""
    processes = available_cpus()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        rates = pool.starmap(_images_per_second, [(str(model_file), batch, seconds)] * processes)
    return sum(rates)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (a server's workers), in MB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        pending += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        if match := re.search(r"VmRSS:\s+(\d+) kB", status):
            total += int(match.group(1)) / 1024
    return total


def main() -> int:
    from mnist_shared.manifest import Manifest, latest_version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"| variant | precision | images/s ({available_cpus()} processes, batch {BATCH}) |")
    print("|---|---|---|")
    for variant in ("group", "instance", "layer"):
        version_dir = (
            committed_models() / variant / str(latest_version(committed_models() / variant))
        )
        for precision, file in Manifest.read(version_dir).precision_files().items():
            rate = ceiling(version_dir / file, seconds=args.seconds)
            print(f"| {variant} | {precision} | {rate:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
