"""Reading whole numbers through `POST /read`: per-digit and whole-number accuracy by digit count,
by condition, separated and touching, and what a large photo of a number costs.

Generates seeded pictures of numbers from MNIST test digits (`devtools/pictures/numbers.py`:
canvas exports, phone photos, shadows, ruled paper; 2-8 digits; separated or touching and
slightly overlapping), posts them to the service on the committed models (in process), and
prints the tables. Then the CPU cost of a 1000x1000 JPEG photo of a 6-digit number (decoding,
segmentation, framing and inference, CPU time of the process).

    python -m benchmarks.read_numbers [--per-cell 40] [--seed 7] [--models-dir D --version N]

Runs twice, in one run: without the digit check (touching digits cut by the width of marks
alone) and as served (the check judging the cuts). Exits 1 when, as served, separated digits
miss the targets (>= 98% of digits, >= 95% of 4-digit numbers),
touching 4-digit numbers fall under 90%, or the large photo costs more than 30 ms of CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from devtools.committed import committed_models
from devtools.pictures.numbers import CONDITIONS, SPACINGS, layout, sample_numbers
from devtools.pictures.scene import encode

TARGET_DIGITS, TARGET_NUMBERS, TARGET_TOUCHING, TARGET_CPU_MS = 0.98, 0.95, 0.90, 30.0
LENGTHS = (2, 4, 6, 8)


def read(client: TestClient, data: bytes, query: dict[str, str]) -> str:
    files = [("file", ("n.jpg", data, "image/jpeg"))]
    response = client.post("/read", params=query, files=files)
    if response.status_code != 200:
        return ""
    return response.json()["readings"][0]["number"]


def accuracy_table(
    client: TestClient,
    images: np.ndarray,
    labels: np.ndarray,
    per_cell: int,
    seed: int,
    query: dict[str, str],
) -> dict:
    """{(spacing, length, condition): (digits right, digits, numbers right, numbers)}."""
    table: dict = defaultdict(lambda: [0, 0, 0, 0])
    for spacing in SPACINGS:
        for length in LENGTHS:
            pictures = sample_numbers(images, labels, per_cell, seed, (length,), spacing)
            for picture in pictures:
                got = read(client, picture.picture.data, query)
                cell = table[spacing, length, picture.condition]
                cell[0] += sum(a == b for a, b in zip(got, picture.number, strict=False)) * (
                    len(got) == len(picture.number)
                )
                cell[1] += length
                cell[2] += got == picture.number
                cell[3] += 1
        print(f"{spacing}: done", flush=True)
    return table


def large_photo_cpu_ms(
    client: TestClient,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    query: dict[str, str],
    rounds: int = 10,
) -> float:
    """CPU milliseconds of the process for one /read of a 1000x1000 photo of 6 digits."""
    rng = np.random.default_rng(seed)
    strip = layout([images[i] for i in rng.choice(len(images), 6, replace=False)], "separated", rng)
    ink = Image.fromarray(255 - strip).resize((900, round(900 * strip.shape[0] / strip.shape[1])))
    sheet = Image.new("L", (1000, 1000), 235)
    sheet.paste(ink, (50, 400))
    data = encode(sheet.convert("RGB"), "JPEG", quality=90).data
    read(client, data, query)  # warm
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        read(client, data, query)
        best = min(best, (time.process_time() - started) * 1000)
    return best


def main() -> int:
    from service.app import create_app
    from service.settings import Settings
    from training.data import load_mnist

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-cell", type=int, default=40, help="pictures per spacing and length")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--models-dir", type=Path, help="default: the committed models")
    parser.add_argument(
        "--version", type=int, help="version of group to read with; default: serving"
    )
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    query = {"variant": "group"} | ({"version": str(args.version)} if args.version else {})
    status = 0
    # Without the digit check first: touching digits cut by the width of marks alone (before),
    # then as served (the check judging the cuts); the targets apply to the second.
    for checked in (False, True):
        print(f"\n## {'with' if checked else 'without'} the digit check", flush=True)
        models_dir = args.models_dir or committed_models()
        settings = Settings(models_dir=models_dir, variants=["group"], digit_check=checked)
        with TestClient(create_app(settings)) as client:
            while client.get("/health/ready").status_code != 200:
                time.sleep(0.05)
            images, labels = data.test_images, data.test_labels
            table = accuracy_table(client, images, labels, args.per_cell, args.seed, query)
            cpu_ms = large_photo_cpu_ms(client, images, labels, args.seed, query)
        status = report(table, cpu_ms, checked)
    return status


def report(table: dict, cpu_ms: float, targets: bool = True) -> int:
    def share(cells: list, right: int, total: int) -> float:
        return sum(c[right] for c in cells) / max(1, sum(c[total] for c in cells))

    misses = []
    for spacing in SPACINGS:
        print(f"\n### {spacing} digits: digits right / whole numbers right\n")
        print("| digits | " + " | ".join(CONDITIONS) + " | all |")
        print("|---" * (len(CONDITIONS) + 2) + "|")
        for length in LENGTHS:
            cells = [table[spacing, length, c] for c in CONDITIONS]
            row = [f"{share([c], 0, 1):.1%} / {share([c], 2, 3):.0%}" for c in cells]
            print(
                f"| {length} | "
                + " | ".join(row)
                + f" | {share(cells, 0, 1):.1%} / {share(cells, 2, 3):.1%} |"
            )
        four = [table[spacing, 4, c] for c in CONDITIONS]
        every = [table[spacing, n, c] for n in LENGTHS for c in CONDITIONS]
        if spacing == "separated":
            if share(every, 0, 1) < TARGET_DIGITS:
                misses.append(f"separated digits {share(every, 0, 1):.1%}")
            if share(four, 2, 3) < TARGET_NUMBERS:
                misses.append(f"separated 4-digit numbers {share(four, 2, 3):.1%}")
        elif share(four, 2, 3) < TARGET_TOUCHING:
            misses.append(f"touching 4-digit numbers {share(four, 2, 3):.1%}")
    print(f"\n1000x1000 JPEG photo of 6 digits: {cpu_ms:.1f} ms of CPU (target <= {TARGET_CPU_MS})")
    if cpu_ms > TARGET_CPU_MS:
        misses.append(f"large photo {cpu_ms:.1f} ms")
    if not targets:
        return 0
    print("targets met" if not misses else "missed: " + "; ".join(misses))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
