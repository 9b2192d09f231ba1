"""What an image costs in onnxruntime by batch size: the evidence behind MNIST_MAX_BATCH_SIZE.

Runs the committed model of a variant in one session as the service builds it (one intra-op
thread), in each precision it serves (fp32, and its INT8 twin where it passed its gate), at
batch sizes 1 to 64, the sizes interleaved in each round so that the machine's noise
hits all alike, best of `--rounds` kept, and prints the time per image. On a CPU the cost per
image falls at first (fewer calls, wider matrix products) and then rises again once a batch's
activations no longer fit in the caches.

    python -m benchmarks.batch_size [--variant group] [--rounds 5]

Exits 1 when the service's default batch size costs more than 1.1x the cheapest size per image,
in any precision.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from devtools.committed import committed_models
from mnist_shared.manifest import Manifest, latest_version
from service.runtime.backends import OnnxBackend
from service.settings import Settings

SIZES = (1, 2, 4, 8, 16, 32, 64)
TARGET = 1.1  # the default's cost per image / the cheapest size's


def per_image_us(
    backend: OnnxBackend, images: np.ndarray, sizes: list[int], rounds: int
) -> dict[int, float]:
    """Best time per image (microseconds) of each batch size over `rounds` interleaved rounds."""
    best = {size: float("inf") for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            batch = images[:size]
            backend.predict(batch)  # warm for this shape
            calls = max(128 // size, 8)
            started = time.perf_counter()
            for _ in range(calls):
                backend.predict(batch)
            elapsed = time.perf_counter() - started
            best[size] = min(best[size], elapsed / calls / size * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="group")
    parser.add_argument("--models-dir", type=Path, default=committed_models())
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    variant_dir = args.models_dir / args.variant
    version_dir = variant_dir / str(latest_version(variant_dir))
    settings = Settings(models_dir=args.models_dir)
    manifest = Manifest.read(version_dir)
    default = settings.max_batch_size
    sizes = sorted({*SIZES, default})
    images = np.random.default_rng(0).random((max(sizes), 28, 28), dtype=np.float32)
    costs = {
        precision: per_image_us(
            OnnxBackend(version_dir, manifest, settings.inference_threads, precision=precision),
            images, sizes, args.rounds,
        )
        for precision in manifest.precision_files()
    }  # fmt: skip
    print(f"{args.variant} v{version_dir.name}, {settings.inference_threads} intra-op thread(s)")
    print("| batch | " + " | ".join(f"{p} us per image | vs cheapest" for p in costs) + " |")
    print("| --- |" + " --- | --- |" * len(costs))
    for size in sizes:
        cells = [
            f"{best[size]:.0f} | {best[size] / min(best.values()):.2f}x" for best in costs.values()
        ]
        print(f"| {size} | " + " | ".join(cells) + " |")
    misses = 0
    for precision, best in costs.items():
        cheapest = min(best, key=best.__getitem__)
        ratio = best[default] / best[cheapest]
        misses += ratio > TARGET
        print(f"{precision}: default MNIST_MAX_BATCH_SIZE={default} costs {ratio:.2f}x the "
              f"cheapest ({cheapest}); target <= {TARGET}")  # fmt: skip
    if len(costs) > 1:
        print(
            f"int8 / fp32 at batch {default}: {costs['int8'][default] / costs['fp32'][default]:.2f}"
        )
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
