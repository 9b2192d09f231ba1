"""Decode + preprocessing time per picture, on one core, by picture kind and size.

    python -m benchmarks.preprocessing_cost [--rounds 15]

Times `service.dataplane.decoding.decode_images` on one picture (what `/predict` runs per picture: header checks,
decoding at reduced size, `mnist_shared.preprocessing.to_mnist_digit`) on generated pictures,
best of `--rounds` rounds. Targets: a 1000x1000 JPEG photo <= 15 ms (also when the digit is
cropped tight, which reads the picture twice); a 4000x4000 JPEG photo no more than 15 ms above
what libjpeg's 1/8-scale decode of it alone costs (that decode, entropy-bound, is the floor); a
28x28 PNG no more than 1.1x what decoding it and making it white-on-black grayscale costs (the
28x28 path before the real-world preprocessing). Exits 1 on a miss. With `--data-dir` (or
MNIST_DATA_DIR) the pictures show a real MNIST digit, else a drawn "1".
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from devtools.pictures.scene import Scene, compose
from service.dataplane.decoding import Limits, decode_images

LIMITS = Limits(max_images=1, max_image_pixels=64_000_000, max_request_pixels=64_000_000)
LARGE_OVER_DECODE_MS = 15.0
PHONE_TARGET_MS = 15.0
SMALL_TARGET_RATIO = 1.1


def best_ms(function: Callable[[], object], rounds: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1000


def encoded(picture: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, quality=90)
    return buffer.getvalue()


def pictures(digit: np.ndarray) -> dict[str, bytes]:
    rng = np.random.default_rng(0)

    def photo(side: int) -> Image.Image:
        scene = Scene(canvas=(side, side), digit_height=side // 2, noise=6.0, paper=(180,) * 3)
        return compose(digit, scene, rng)

    large = photo(4000)
    tight = Scene(canvas=(1000, 1000), digit_height=1000, noise=6.0, paper=(200,) * 3)
    return {
        "4000x4000 JPEG photo": encoded(large, "JPEG"),
        "4000x4000 PNG photo": encoded(large, "PNG"),
        "1000x1000 JPEG photo": encoded(photo(1000), "JPEG"),
        "1000x1000 JPEG, tight": encoded(compose(digit, tight, rng), "JPEG"),
        "280x280 PNG canvas": encoded(photo(280), "PNG"),
        "28x28 PNG (MNIST)": encoded(Image.fromarray(digit), "PNG"),
    }


def decode_only(data: bytes) -> Image.Image:
    """A JPEG decoded at 1/8 scale, the least any reduced-size decode can cost."""
    image = Image.open(io.BytesIO(data))
    image.draft("L", (image.width // 8, image.height // 8))
    image.load()
    return image


def plain_28x28(data: bytes) -> np.ndarray:
    """The 28x28 path before real-world preprocessing: decode, grayscale, invert if light."""
    gray = np.asarray(ImageOps.grayscale(Image.open(io.BytesIO(data)).convert("RGB")))
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 255 - gray if np.median(border) > 127 else gray


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    digit = _a_digit(args.data_dir)
    timings = {}
    for name, data in pictures(digit).items():
        repeat = 3 if name.startswith("4000") else 200 if name.startswith("28") else 20
        one = [(name, data)]
        timings[name] = best_ms(lambda o=one: decode_images(o, LIMITS), args.rounds, repeat)
        print(f"{name:>22}: {timings[name]:8.3f} ms  ({len(data) / 1024:,.0f} KiB)")
    large = pictures(digit)["4000x4000 JPEG photo"]
    decode = best_ms(lambda: decode_only(large), args.rounds, 3)
    print(
        f"{'4000x4000 JPEG decode':>22}: {decode:8.3f} ms  (libjpeg at 1/8 scale, no preprocessing)"
    )
    small = pictures(digit)["28x28 PNG (MNIST)"]
    plain = best_ms(lambda: plain_28x28(small), args.rounds, 200)
    ratio = timings["28x28 PNG (MNIST)"] / plain
    print(f"{'28x28 plain decode':>22}: {plain:8.3f} ms  (ratio {ratio:.2f})")
    misses = []
    if timings["4000x4000 JPEG photo"] > decode + LARGE_OVER_DECODE_MS:
        misses.append(
            f"4000x4000 JPEG {timings['4000x4000 JPEG photo']:.1f} ms > its 1/8 decode "
            f"{decode:.1f} ms + {LARGE_OVER_DECODE_MS:.0f} ms"
        )
    for name in ("1000x1000 JPEG photo", "1000x1000 JPEG, tight"):
        if timings[name] > PHONE_TARGET_MS:
            misses.append(f"{name} {timings[name]:.1f} ms > {PHONE_TARGET_MS:.0f} ms")
    if ratio > SMALL_TARGET_RATIO:
        misses.append(f"28x28 path {ratio:.2f}x the plain decode > {SMALL_TARGET_RATIO}x")
    for miss in misses:
        print(f"MISS: {miss}")
    print("targets met" if not misses else f"{len(misses)} targets missed")
    return 1 if misses else 0


def _a_digit(data_dir: str | None) -> np.ndarray:
    if data_dir:
        from training.data import load_idx_directory

        return load_idx_directory(data_dir).test_images[0]
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a "1" when no MNIST copy is at hand
    return digit


if __name__ == "__main__":
    sys.exit(main())
