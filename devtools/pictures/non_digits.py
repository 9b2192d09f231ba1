"""Client-like pictures of things that are not one digit, framed as the service frames them.

`training.non_digits` draws letters and symbols (in the font families and hand-drawn shapes
the digit check did not train on), scribbles and several digits written together; each is then
handed to a random kind of client picture (`devtools.pictures.kinds`: photographed, shadowed,
on ruled paper, JPEG-encoded ...) and decoded by the service's own decoding, exactly as a digit
would be.
What the service then shows the models is what the check is measured on
(`benchmarks/not_a_digit.py`, `tests/unit/test_digit_check.py`), and, drawn from the training
split in the training font families, what it learns from besides (`mnist-digit-check
--client-pictures`):

    python -m devtools.pictures.non_digits --data-dir ../shared/data/mnist \
        --count 4000 --output runs/non-digits-train.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from devtools.pictures.kinds import KINDS as PICTURE_KINDS
from devtools.pictures.kinds import render
from devtools.realworld_set import framed_as_served
from training.non_digits import KINDS, non_digits, split_lettering


def framed_non_digits(
    images: np.ndarray,
    count: int,
    seed: int,
    kinds: tuple[str, ...] = KINDS,
    for_training: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """`count` seeded non-digits as client pictures, framed by the service's decoding: uint8
    (K, 28, 28) and each one's kind; K < count where decoding found no ink at all. `images`
    are the digits several-digit pictures are made of (the test split to measure, the
    training split `for_training`, which also draws in the training fonts and shapes)."""
    rng = np.random.default_rng([seed, 101])
    training_lettering, held_out_lettering = split_lettering()
    lettering = training_lettering if for_training else held_out_lettering
    inks, made_kinds = non_digits(images, count, rng, lettering, kinds)
    framed, framed_kinds = [], []
    for ink, kind in zip(inks, made_kinds, strict=True):
        picture_kind = list(PICTURE_KINDS)[int(rng.integers(len(PICTURE_KINDS)))]
        digit = framed_as_served(picture_kind, render(picture_kind, ink, rng))
        if digit is None:  # faint ink the picture's noise drowned
            continue
        framed.append(digit)
        framed_kinds.append(kind)
    return np.array(framed, np.uint8).reshape(-1, 28, 28), framed_kinds


def main(argv: list[str] | None = None) -> int:
    from training.data import load_mnist

    parser = argparse.ArgumentParser(prog="python -m devtools.pictures.non_digits")
    parser.add_argument("--data-dir", type=Path, help="MNIST IDX files; default: the downloader")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=12)  # not the benchmark's (7)
    parser.add_argument("--output", type=Path, required=True, help="the .npz to write")
    args = parser.parse_args(argv)
    data = load_mnist(args.data_dir)
    started = time.perf_counter()
    images, kinds = framed_non_digits(data.train_images, args.count, args.seed, for_training=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, images=images, kinds=np.array(kinds))
    print(f"wrote {len(images)} pictures to {args.output} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
