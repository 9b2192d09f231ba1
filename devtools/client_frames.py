"""Every training digit as client pictures, framed as the service frames uploads: what
`mnist-train --client-frames` trains on besides MNIST as it is.

Each copy draws every training digit as a client picture of a random kind (the kinds of
`devtools.pictures.kinds`, and `low_resolution`: scanned as the UCI digits were), decodes it with
the service's own decoding and keeps the 28x28 image the model would be shown. A picture in
which no digit is found keeps the MNIST digit in that copy. Written as one .npz: `frames` uint8
(copies, N, 28, 28) in the order of the training split's rows, `kinds` (copies, N), and the
`seed`, so that the trainer can take the rows of its own training part (never its validation
part) and a run is reproducible.

    python -m devtools.client_frames --data-dir ../shared/data/mnist --output runs/client-frames.npz
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from devtools.pictures.kinds import KINDS
from devtools.pictures.low_resolution import low_resolution
from devtools.realworld_set import framed_as_served
from training.data import load_mnist

COPIES = 3
TRAINING_KINDS = {**KINDS, "low_resolution": low_resolution}
CHUNK = 250  # digits a worker frames before reporting


def frame_chunk(
    digits: np.ndarray, seed: int, copy: int, start: int
) -> tuple[np.ndarray, list[str]]:
    """The framed client pictures of `digits` (rows `start`.. of the split) for one copy."""
    rng = np.random.default_rng([seed, copy, start])
    names = list(TRAINING_KINDS)
    framed = np.empty_like(digits)
    kinds = []
    for row, digit in enumerate(digits):
        kind = names[int(rng.integers(len(names)))]
        seen = framed_as_served(kind, TRAINING_KINDS[kind](digit, rng))
        if seen is None:  # no digit found: the copy keeps the MNIST digit
            seen, kind = digit, "mnist"
        framed[row] = seen
        kinds.append(kind)
    return framed, kinds


def client_frames(images: np.ndarray, copies: int, seed: int, workers: int) -> dict[str, object]:
    """{"frames": uint8 (copies, N, 28, 28), "kinds": (copies, N)}, with progress printed."""
    frames = np.empty((copies, *images.shape), np.uint8)
    kinds = np.empty((copies, len(images)), dtype="U24")
    jobs = [(c, s) for c in range(copies) for s in range(0, len(images), CHUNK)]
    started, done, total = time.perf_counter(), 0, copies * len(images)
    with ProcessPoolExecutor(workers) as pool:
        futures = {
            pool.submit(frame_chunk, images[s : s + CHUNK], seed, c, s): (c, s) for c, s in jobs
        }
        for future, (copy, start) in futures.items():
            framed, chunk_kinds = future.result()
            frames[copy, start : start + len(framed)] = framed
            kinds[copy, start : start + len(framed)] = chunk_kinds
            done += len(framed)
            elapsed = time.perf_counter() - started
            print(f"framed {done}/{total} ({elapsed:.0f} s)", flush=True)
    return {"frames": frames, "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.client_frames", description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="MNIST IDX files; default: the downloader")
    parser.add_argument("--output", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--copies", type=int, default=COPIES, help="client pictures per digit")
    parser.add_argument("--seed", type=int, default=5)  # not the benchmarks' (7) nor the gate's
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error(f"--copies must be >= 1, got {args.copies}")

    images = load_mnist(args.data_dir).train_images
    started = time.perf_counter()
    written = client_frames(images, args.copies, args.seed, args.workers)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial.npz")
    np.savez_compressed(partial, **written, seed=args.seed, count=len(images))
    partial.replace(args.output)  # whole or not at all
    print(f"wrote {args.output} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
