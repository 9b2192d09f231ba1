"""What the service says of pictures that are not one digit: hand-drawn letters and symbols sent
to `/predict` and `/read`, numbers sent to `/predict`, and the flags `/read` puts on numbers.

Seeded pictures, posted to the service on the committed models (in process, variant group):
* letters and symbols drawn as strokes (`training.hand_letters`), as canvas exports and
  phone photos: flagged by `/predict`; flagged by `/read` (`looks_like_number`) and refused by
  `/read?strict=true`; "before" is the digit check's score alone (what the service said until
  segmentation judged its cuts);
* numbers of 2-6 MNIST test digits, separated and touching (`devtools.pictures.numbers`): read
  by `/read`, and flagged although read right (the false alarms the cuts' judgement costs);
  sent to `/predict`, flagged as holding several digits (`digits_in_picture`);
* client pictures of one digit, every kind: wrongly said to hold several digits.

    python -m benchmarks.letters_and_numbers [--letters 144] [--per-cell 40] [--seed 7]

Exits 1 when: letters flagged by `/read` under 90%, right readings flagged over 10%, numbers
sent to `/predict` flagged under 90%, or one-digit pictures said to hold several over 0.5%.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from devtools.committed import committed_models
from devtools.pictures.kinds import KINDS, render, sample
from devtools.pictures.numbers import SPACINGS, sample_numbers
from devtools.pictures.scene import Picture
from training.hand_letters import drawings

TARGET_LETTERS, TARGET_FALSE_FLAGS, TARGET_NUMBERS, TARGET_SINGLES = 0.90, 0.10, 0.90, 0.005
LETTER_KINDS = ("white_canvas", "grey_photo", "sheet_on_desk", "ruled_paper")


def post(client: TestClient, path: str, picture: Picture, strict: bool = False) -> tuple[int, dict]:
    files = {"file": ("p." + picture.extension, picture.data, picture.media_type)}
    query = "?variant=group" + ("&strict=true" if strict else "")
    response = client.post(path + query, files=files)
    return response.status_code, response.json()


def letters(client: TestClient, count: int, seed: int, threshold: float) -> Counter:
    rng, tally = np.random.default_rng(seed), Counter()
    for index, (_, ink) in enumerate(drawings(count, seed)):
        picture = render(LETTER_KINDS[index % len(LETTER_KINDS)], ink, rng)
        _, predicted = post(client, "/predict", picture)
        entry = predicted.get("predictions", [{}])[0]
        tally["predict before"] += entry.get("digit_score", 1.0) < threshold
        tally["predict"] += entry.get("looks_like_digit") is False
        status, read = post(client, "/read", picture)
        reading = read.get("readings", [{}])[0]
        scores = [d["digit_score"] for d in reading.get("digits", [])]
        tally["read before"] += status != 200 or min(scores) < threshold
        tally["read"] += status != 200 or reading.get("looks_like_number") is False
        strict_status, _ = post(client, "/read", picture, strict=True)
        tally["strict"] += strict_status == 422
    return tally


def numbers(
    client: TestClient,
    images: np.ndarray,
    labels: np.ndarray,
    per_cell: int,
    seed: int,
    threshold: float,
) -> dict:
    table = {}
    for spacing in SPACINGS:
        tally = Counter()
        for number in sample_numbers(images, labels, per_cell, seed, (2, 4, 6), spacing):
            _, read = post(client, "/read", number.picture)
            reading = read["readings"][0]
            right = reading.get("number") == number.number
            tally["pictures"] += 1
            tally["right"] += right
            tally["right, flagged"] += right and reading.get("looks_like_number") is False
            _, predicted = post(client, "/predict", number.picture)
            entry = predicted["predictions"][0]
            tally["predict flagged"] += entry.get("looks_like_digit") is False
            tally["predict flagged before"] += entry.get("digit_score", 1.0) < threshold
            tally["predict said several"] += "digits_in_picture" in entry
        table[spacing] = tally
    return table


def singles(
    client: TestClient, images: np.ndarray, labels: np.ndarray, per_kind: int, seed: int
) -> tuple[int, int]:
    said, total = 0, 0
    for kind in KINDS:
        for picture, _ in sample(kind, images, labels, per_kind, seed):
            _, predicted = post(client, "/predict", picture)
            said += "digits_in_picture" in predicted.get("predictions", [{}])[0]
            total += 1
    return said, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--letters", type=int, default=144)
    parser.add_argument("--per-cell", type=int, default=40)
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--models-dir", type=Path, help="models and digit check; default: the committed ones"
    )
    args = parser.parse_args(argv)
    from service.app import create_app
    from service.settings import Settings
    from training.data import load_idx_directory

    data = load_idx_directory(args.data_dir)
    models_dir = args.models_dir or committed_models()
    app = create_app(Settings(models_dir=models_dir, grpc_port=0, log_level="warning"))
    with TestClient(app) as client:
        while client.get("/health/ready").status_code != 200:
            time.sleep(0.2)
        threshold = client.get("/models").json()["digit_check"]["threshold"]
        drawn = letters(client, args.letters, args.seed, threshold)
        table = numbers(
            client, data.test_images, data.test_labels, args.per_cell, args.seed, threshold
        )
        said, total = singles(client, data.test_images, data.test_labels, args.per_kind, args.seed)
    return report(drawn, args.letters, table, said, total)


def report(drawn: Counter, count: int, table: dict, said: int, total: int) -> int:
    print(f"hand-drawn letters and symbols ({count}, kinds {', '.join(LETTER_KINDS)}):")
    print("| | before | now |\n| --- | --- | --- |")
    print(
        f"| /predict flags | {drawn['predict before'] / count:.1%} | {drawn['predict'] / count:.1%} |"
    )
    print(f"| /read flags | {drawn['read before'] / count:.1%} | {drawn['read'] / count:.1%} |")
    print(f"| /read?strict=true refuses | (not accepted) | {drawn['strict'] / count:.1%} |")
    print("\nnumbers of 2, 4 and 6 digits:")
    print(
        "| spacing | pictures | /read right | right but flagged | /predict flags (before) "
        "| /predict says several |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for spacing, t in table.items():
        n = t["pictures"]
        print(
            f"| {spacing} | {n} | {t['right'] / n:.1%} | {t['right, flagged'] / max(1, t['right']):.1%} "
            f"| {t['predict flagged'] / n:.1%} ({t['predict flagged before'] / n:.1%}) "
            f"| {t['predict said several'] / n:.1%} |"
        )
    print(f"\none-digit client pictures said to hold several digits: {said} of {total}")
    right = sum(t["right"] for t in table.values())
    false_flags = sum(t["right, flagged"] for t in table.values()) / max(1, right)
    numbers_flagged = sum(t["predict flagged"] for t in table.values()) / sum(
        t["pictures"] for t in table.values()
    )
    missed = [
        name
        for name, miss in (
            ("letters flagged by /read", drawn["read"] / count < TARGET_LETTERS),
            ("right readings flagged", false_flags > TARGET_FALSE_FLAGS),
            ("numbers flagged by /predict", numbers_flagged < TARGET_NUMBERS),
            ("one digit said to be several", said / total > TARGET_SINGLES),
        )
        if miss
    ]
    if missed:
        print(f"missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
