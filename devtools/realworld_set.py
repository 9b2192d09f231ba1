"""Client-like pictures of MNIST test digits, framed as the service frames uploads, by kind.

What the INT8 twin's gate reads besides the test split (`mnist-export --realworld-set`): every
kind of `devtools.pictures.kinds` rendered from seeded test digits, decoded by the service's
own decoding (so the 28x28 images are exactly what the model would see), written as one .npz
(`images` uint8 (N, 28, 28), `labels`, `kinds`). A picture in which no digit is found is left
out: fp32 and INT8 would both miss it.

    python -m devtools.realworld_set --data-dir ../shared/data/mnist --output runs/realworld.npz
    python -m devtools.realworld_set --split train --per-kind 150 --output runs/realworld-train.npz
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from devtools.pictures.kinds import KINDS, sample
from devtools.pictures.scene import Picture
from service.dataplane.decoding import Limits, decode_images
from service.errors import NoDigit
from training.data import MnistData, load_mnist

PER_KIND = 300
_LIMITS = Limits(max_images=1, max_image_pixels=50_000_000, max_request_pixels=50_000_000)


def framed_as_served(label: str, picture: Picture) -> np.ndarray | None:
    """The 28x28 image the model would be shown of one client picture (the service's own
    decoding, generous size limits), or None when no digit is found in it."""
    try:
        return decode_images([(label, picture.data)], _LIMITS).digits[0]
    except NoDigit:
        return None


def framed_pictures(
    kind: str, images: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` pictures of `kind`, as the model sees them (uint8 (K, 28, 28)), and their
    digits; K < count when no digit was found in some."""
    framed, truth = [], []
    for picture, label in sample(kind, images, labels, count, seed):
        digit = framed_as_served(kind, picture)
        if digit is not None:
            framed.append(digit)
            truth.append(label)
    return np.array(framed, np.uint8).reshape(-1, 28, 28), np.array(truth, np.int64)


def _split(data: MnistData, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "train":
        return data.train_images, data.train_labels
    return data.test_images, data.test_labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.realworld_set", description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="MNIST IDX files; default: the downloader")
    parser.add_argument("--output", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--per-kind", type=int, default=PER_KIND)
    parser.add_argument("--seed", type=int, default=11)  # not the benchmarks' seed (7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="digits to draw: test (what the INT8 gate measures on) or train (what the digit "
        "check learns from: mnist-digit-check --realworld-set)",
    )
    args = parser.parse_args(argv)

    images, labels = _split(load_mnist(args.data_dir), args.split)
    parts: list[tuple[np.ndarray, np.ndarray, str]] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(framed_pictures, kind, images, labels, args.per_kind, args.seed)
            for kind in KINDS
        ]
        for index, (kind, future) in enumerate(zip(KINDS, futures, strict=True), start=1):
            framed, truth = future.result()
            parts.append((framed, truth, kind))
            print(
                f"[{index}/{len(KINDS)}] {kind}: {len(truth)} of {args.per_kind} framed", flush=True
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        images=np.concatenate([images for images, _, _ in parts]),
        labels=np.concatenate([labels for _, labels, _ in parts]),
        kinds=np.concatenate([[kind] * len(labels) for _, labels, kind in parts]),
    )
    print(f"wrote {args.output} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
