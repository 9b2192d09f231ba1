"""The digit check: what it flags of digits, of client pictures of digits and of non-digits.

Scores, with the committed check (`models/digit_check`, loaded as the service loads it):
* the MNIST test split as it is (10,000 digits);
* client-like pictures of test digits, every kind of `devtools.pictures.kinds`, framed by the
  service's decoding (`--realworld-set runs/realworld.npz`, else `--per-kind` made here);
* client-like pictures of non-digits (`devtools.pictures.non_digits`: letters and symbols in
  font families the check never trained on, scribbles, several digits written together).
Prints the share flagged of each, by kind, what the check costs per image, and how sure the
classifier (group, fp32) was of the non-digits it would otherwise have answered.

    python -m benchmarks.not_a_digit --data-dir ../shared/data/mnist [--non-digits 800]

Exits 1 when a target is missed: >= 90% of non-digits flagged, <= 0.5% of MNIST test digits
and <= 2% of client pictures of digits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.pictures.kinds import KINDS
from devtools.pictures.non_digits import framed_non_digits
from devtools.realworld_set import framed_pictures
from mnist_shared.digit_check import CHECK_DIR_NAME
from mnist_shared.preprocessing import scale_pixels
from service.runtime.digit_check import DigitCheck, load_digit_check

TARGET_NON_DIGITS, TARGET_MNIST, TARGET_PICTURES = 0.90, 0.005, 0.02


def flagged(check: DigitCheck, images: np.ndarray) -> np.ndarray:
    scores = np.concatenate(
        [check.scores_now(scale_pixels(images[i : i + 256])) for i in range(0, len(images), 256)]
    )
    return scores < check.threshold


def by_kind(flags: np.ndarray, kinds: np.ndarray) -> str:
    shares = {kind: float(np.mean(flags[kinds == kind])) for kind in np.unique(kinds)}
    return ", ".join(f"{kind} {share:.1%}" for kind, share in shares.items())


def client_pictures(args: argparse.Namespace, data: object) -> tuple[np.ndarray, np.ndarray]:
    if args.realworld_set and Path(args.realworld_set).is_file():
        stored = np.load(args.realworld_set)
        return stored["images"], stored["kinds"]
    images, kinds = [], []
    for kind in KINDS:
        framed, _ = framed_pictures(kind, data.test_images, data.test_labels, args.per_kind, 7)  # type: ignore[attr-defined]
        images.append(framed)
        kinds += [kind] * len(framed)
    return np.concatenate(images), np.array(kinds)


def cost_us(check: DigitCheck, images: np.ndarray, batch: int) -> float:
    x = scale_pixels(images[:batch])
    check.scores_now(x)
    started, rounds = time.process_time(), max(20, 800 // batch)
    for _ in range(rounds):
        check.scores_now(x)
    return (time.process_time() - started) / rounds / batch * 1e6


def classifier_confidence(images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(REPO_ROOT / "models/group/3/model.onnx"))
    return session.run(None, {"image": scale_pixels(images)})[0].max(axis=1)


def main(argv: list[str] | None = None) -> int:
    from training.data import load_mnist

    parser = argparse.ArgumentParser(prog="python -m benchmarks.not_a_digit", description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    parser.add_argument("--check-dir", type=Path, default=committed_models() / CHECK_DIR_NAME)
    parser.add_argument("--realworld-set", default=str(REPO_ROOT / "runs/realworld.npz"))
    parser.add_argument("--per-kind", type=int, default=40, help="without a realworld set")
    parser.add_argument("--non-digits", type=int, default=800)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    check = load_digit_check(args.check_dir, ThreadPoolExecutor(1))
    data = load_mnist(args.data_dir)
    print(f"digit check v{check.manifest.version}, threshold {check.threshold:.4g}", flush=True)

    mnist = flagged(check, data.test_images)
    print(f"MNIST test digits ({len(mnist)}): {mnist.mean():.2%} flagged (target <= 0.5%)")
    pictures, picture_kinds = client_pictures(args, data)
    pictures_flagged = flagged(check, pictures)
    print(
        f"client pictures of test digits ({len(pictures)}, {len(np.unique(picture_kinds))} "
        f"kinds): {pictures_flagged.mean():.2%} flagged (target <= 2%)\n  {by_kind(pictures_flagged, picture_kinds)}",
        flush=True,
    )
    others, other_kinds = framed_non_digits(data.test_images, args.non_digits, args.seed)
    others_flagged = flagged(check, others)
    kinds = np.array(other_kinds)
    print(
        f"client pictures of non-digits ({len(others)}): {others_flagged.mean():.1%} flagged "
        f"(target >= 90%)\n  {by_kind(others_flagged, kinds)}"
    )
    confidence = classifier_confidence(others)
    print(
        f"  the classifier's confidence in its digit for them: median {np.median(confidence):.3f}"
        f", {np.mean(confidence > 0.9):.0%} above 0.9"
    )
    costs = ", ".join(
        f"batch {b}: {cost_us(check, data.test_images, b):.0f} us" for b in (1, 8, 64)
    )
    print(f"CPU per image (one thread): {costs}")
    missed = [
        name
        for name, miss in (
            ("non-digits", others_flagged.mean() < TARGET_NON_DIGITS),
            ("MNIST test", mnist.mean() > TARGET_MNIST),
            ("client pictures", pictures_flagged.mean() > TARGET_PICTURES),
        )
        if miss
    ]
    print("targets missed: " + ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
