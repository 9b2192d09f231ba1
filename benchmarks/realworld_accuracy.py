"""Accuracy on client-like pictures, through `POST /predict`, per kind and variant.

Renders MNIST test digits as phone photos, scans and canvas exports (`devtools/pictures/kinds.py`),
posts them as multipart uploads with `variant=all&return_input=true` to the service on the
committed models (in process), and prints the per-kind, per-variant accuracy table. With
`--figure PATH` it also draws a few inputs next to the 28x28 image the model saw.

    python -m benchmarks.realworld_accuracy [--per-kind 300] [--seed 7] [--figure docs/realworld.png]

Also prints the UCI digits bundled with scikit-learn (real handwriting of other writers),
cropped tight and with a margin. Exits 1 when any generated kind falls below the target (97%)
for any variant.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from devtools.committed import committed_models
from devtools.pictures.kinds import KINDS, Picture, sample

TARGET = 0.97
REQUEST_SIZE = 16  # pictures per request


def post_pictures(
    client: Any, pictures: list[Picture], version: int | None = None
) -> list[dict[str, Any]]:
    """`/predict?variant=all&return_input=true` answers, one request per REQUEST_SIZE pictures
    (of `version` of each variant; None: the one serving)."""
    params: dict[str, Any] = {"variant": "all", "return_input": "true"}
    if version is not None:
        params["version"] = version
    answers = []
    for start in range(0, len(pictures), REQUEST_SIZE):
        chunk = pictures[start : start + REQUEST_SIZE]
        files = [
            ("file", (f"{i}.{p.extension}", p.data, p.media_type)) for i, p in enumerate(chunk)
        ]
        response = client.post("/predict", params=params, files=files)
        if response.status_code != 200:
            raise RuntimeError(f"/predict answered {response.status_code}: {response.text}")
        answers.append(response.json())
    return answers


def accuracy_by_kind(
    client: Any,
    images: np.ndarray,
    labels: np.ndarray,
    per_kind: int,
    seed: int,
    version: int | None = None,
) -> tuple[dict[str, dict[str, float]], float]:
    """({kind: {variant: accuracy}} over `per_kind` pictures of each kind, seconds posting)."""
    table, posting = {}, 0.0
    for kind in KINDS:
        pictures, truth = zip(*sample(kind, images, labels, per_kind, seed), strict=True)
        started = time.perf_counter()
        answers = post_pictures(client, list(pictures), version)
        posting += time.perf_counter() - started
        table[kind] = {
            variant: float(np.mean(digits_read(answers, variant) == np.array(truth)))
            for variant in answers[0]["results"]
        }
        print(f"{kind}: " + ", ".join(f"{v} {a:.1%}" for v, a in table[kind].items()), flush=True)
    return table, posting


def uci_pictures(count: int, seed: int, margin: int = 0) -> tuple[list[Picture], np.ndarray]:
    """Real handwriting of 43 other writers (the UCI digits bundled with scikit-learn, 8x8 at
    16 levels), dark on light at 64 pixels, cropped tight (`margin` 0: ink touches the edges)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    picks = np.random.default_rng(seed).choice(len(digits.images), count, replace=False)
    pictures = []
    for index in picks:
        ink = (255 - digits.images[index] * (255 / 16)).astype(np.uint8)
        picture = Image.fromarray(ink).resize((64, 64), Image.Resampling.BICUBIC)
        if margin:
            picture = ImageOps.expand(picture, margin, fill=255)
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        pictures.append(Picture(buffer.getvalue(), "image/png", "png"))
    return pictures, digits.target[picks]


def uci_accuracy(
    client: Any, count: int, seed: int, version: int | None = None
) -> dict[str, dict[str, float]]:
    """{"uci_tight" / "uci_margin_8px": {variant: accuracy}}."""
    table = {}
    for name, margin in (("uci_tight", 0), ("uci_margin_8px", 8)):
        pictures, truth = uci_pictures(count, seed, margin)
        answers = post_pictures(client, pictures, version)
        table[name] = {
            variant: float(np.mean(digits_read(answers, variant) == truth))
            for variant in answers[0]["results"]
        }
    return table


def digits_read(answers: list[dict[str, Any]], variant: str) -> np.ndarray:
    """Each picture's digit as `variant` read it; -1 for one where no digit was found."""
    return np.array(
        [
            p.get("digit", -1)
            for answer in answers
            for p in answer["results"][variant]["predictions"]
        ]
    )


def draw_figure(client: Any, images: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Two pictures of each kind, each next to what the model saw and the group model's answer."""
    tile, gap = 112, 6
    kinds = list(KINDS)
    columns = 3
    rows = -(-len(kinds) // columns)
    width = columns * (4 * tile + 5 * gap) + gap
    figure = Image.new("RGB", (width, rows * (tile + 22 + gap) + gap), "white")
    draw = ImageDraw.Draw(figure)
    for index, kind in enumerate(kinds):
        pictures = [p for p, _ in sample(kind, images, labels, 2, seed=11)]
        answer = post_pictures(client, pictures)[0]["results"]["group"]["predictions"]
        x0 = gap + (index % columns) * (4 * tile + 5 * gap)
        y0 = gap + (index // columns) * (tile + 22 + gap)
        draw.text((x0, y0), kind.replace("_", " "), fill="black")
        for slot, (picture, prediction) in enumerate(zip(pictures, answer, strict=True)):
            shown = _thumbnail(picture.data, tile)
            if "input" not in prediction:  # no digit found in this picture
                continue
            seen = Image.open(io.BytesIO(base64.b64decode(prediction["input"])))
            seen = seen.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST)
            x = x0 + slot * (2 * tile + 2 * gap)
            figure.paste(shown, (x, y0 + 14))
            figure.paste(seen, (x + tile + gap // 2, y0 + 14))
            draw.text((x + tile + gap, y0 + 16), str(prediction.get("digit", "-")), fill="yellow")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, optimize=True)


def _thumbnail(data: bytes, side: int) -> Image.Image:
    picture = Image.open(io.BytesIO(data)).convert("RGBA")
    checker = Image.new("RGBA", picture.size, (200, 230, 200, 255))  # shows transparency
    checker.alpha_composite(picture)
    checker.thumbnail((side, side))
    framed = Image.new("RGB", (side, side), (235, 235, 235))
    framed.paste(
        checker.convert("RGB"), ((side - checker.width) // 2, (side - checker.height) // 2)
    )
    return framed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=300, help="pictures of each kind")
    parser.add_argument("--seed", type=int, default=7, help="picture generator seed")
    parser.add_argument("--figure", type=Path, help="write the inputs-vs-model-input figure here")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument(
        "--models-dir", type=Path, help="models to serve; default: the committed versions"
    )
    parser.add_argument("--version", type=int, help="version of each variant; default: serving")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("set MNIST_DATA_DIR or pass --data-dir (the MNIST IDX files)")

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from training.data import load_idx_directory

    data = load_idx_directory(args.data_dir)
    models_dir = args.models_dir or committed_models()
    settings = Settings(models_dir=models_dir, max_upload_bytes=64 * 1024 * 1024)
    with TestClient(create_app(settings)) as client:
        while client.get("/health/ready").status_code != 200:
            time.sleep(0.05)
        table, seconds = accuracy_by_kind(
            client, data.test_images, data.test_labels, args.per_kind, args.seed, args.version
        )
        uci = uci_accuracy(client, args.per_kind, args.seed, args.version)
        if args.figure:
            draw_figure(client, data.test_images, data.test_labels, args.figure)
    variants = list(next(iter(table.values())))
    total = args.per_kind * len(table)
    print(
        f"{args.per_kind} pictures per kind (seed {args.seed}); posting them took {seconds:.0f} s "
        f"({1000 * seconds / total:.1f} ms a picture, three models each)"
    )
    print("| kind | " + " | ".join(variants) + " |")
    print("| --- |" + " --- |" * len(variants))
    for kind, row in table.items():
        print(f"| {kind} | " + " | ".join(f"{row[v]:.1%}" for v in variants) + " |")
    print(f"Real handwriting of other writers (scikit-learn's UCI digits, {args.per_kind} each):")
    for kind, row in uci.items():
        print(f"| {kind} | " + " | ".join(f"{row[v]:.1%}" for v in variants) + " |")
    misses = [(k, v, a) for k, row in table.items() for v, a in row.items() if a < TARGET]
    for kind, variant, accuracy in misses:
        print(f"MISS: {kind}/{variant} {accuracy:.1%} < {TARGET:.0%}")
    print("target met" if not misses else f"{len(misses)} below target")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
