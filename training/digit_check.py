"""`mnist-digit-check`: train the digit check, calibrate its threshold, export it to ONNX.

The check (`mnist_shared.digit_check`) is a small CNN reading the classifiers' 28x28 input
and scoring how much it looks like one digit. It learns from MNIST's training digits (and
redrawn copies of them, `training.augment`, as client pictures look after framing) against
letters, symbols, scribbles, several digits written together and hand-drawn letters
(`training.non_digits`),
all framed by the function serving frames uploads with. Its threshold is set on held-out
digits so that it flags `--flag-rate` of them; the manifest records what it then flags of
held-out digits and of non-digits drawn in font families and shapes it never trained on.

    mnist-digit-check --data-dir ../shared/data/mnist --output-dir models/digit_check
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_shared.digit_check import INPUT_NAME, OUTPUT_NAME
from mnist_shared.preprocessing import IMAGE_SIZE, scale_pixels
from training.digit_check_export import DIGITS, REDRAWN, write_check
from training.non_digits import KINDS, non_digits, split_lettering

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckConfig:
    data_dir: str | None = None
    output_dir: Path = Path("models/digit_check")
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    flag_rate: float = 0.002  # of held-out digits; MNIST's test split is measured after
    validation_fraction: float = 0.2
    redrawn_copies: int = 2
    version: int = 1
    realworld_set: Path | None = None  # client-like pictures of training digits, as positives
    non_digit_set: Path | None = None  # client-like pictures of non-digits, as negatives


@dataclass(frozen=True)
class ClientPictures:
    """Client-like pictures as the service framed them: digits (`devtools.realworld_set --split
    train`, uint8 (N, 28, 28); or `devtools.client_frames`, uint8 (copies, training images, 28,
    28), of which only the check's own training rows are learnt from) and non-digits
    (`devtools.pictures.non_digits`, uint8 (N, 28, 28))."""

    digits: np.ndarray
    non_digits: np.ndarray

    @classmethod
    def read(cls, realworld_set: Path, non_digit_set: Path) -> ClientPictures:
        with np.load(realworld_set) as digits:
            framed = digits["frames"] if "frames" in digits else digits["images"]
        return cls(framed, np.load(non_digit_set)["images"])

    def digits_of(self, rows: np.ndarray) -> np.ndarray:
        """The client digits to learn from, given the check's training rows."""
        if self.digits.ndim == 3:  # a sample of the whole split: no rows to choose
            return self.digits
        return self.digits[:, rows].reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


@dataclass(frozen=True)
class Examples:
    """Framed uint8 (N, 28, 28) pictures: what the check trains on, and held-out ones by kind."""

    train_images: np.ndarray
    train_labels: np.ndarray  # 1: one digit, 0: not
    held_out: dict[str, np.ndarray]  # DIGITS, REDRAWN and each non-digit kind


def build_check() -> Any:
    """28x28 in [0, 1] -> how much it looks like one digit (sigmoid)."""
    import keras

    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype="float32", name=INPUT_NAME)
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1))(inputs)
    for width in (32, 64):
        x = keras.layers.Conv2D(width, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    score = keras.layers.Dense(1, activation="sigmoid")(x)
    outputs = keras.layers.Reshape((), name=OUTPUT_NAME)(score)
    return keras.Model(inputs, outputs, name="digit_check")


def make_examples(
    config: CheckConfig, train_images: np.ndarray, client: ClientPictures | None = None
) -> Examples:
    """Digits (MNIST's, redrawn copies, and client pictures of training digits as the service
    framed them) and twice as many non-digits (with client pictures of non-digits); a
    validation share of the digits held out, and non-digits in held-out font families."""
    from training.augment import augmented_pool
    from training.data import split_rows

    rows, val_rows = split_rows(len(train_images), config.validation_fraction, config.seed)
    digits, val_digits = train_images[rows], train_images[val_rows]
    pool = augmented_pool(np.concatenate([digits, val_digits]), config.redrawn_copies, config.seed)
    redrawn, val_redrawn = pool[:, : len(digits)], pool[:, len(digits) :]
    positives = np.concatenate([digits, *redrawn, *([client.digits_of(rows)] if client else [])])
    train_lettering, measure_lettering = split_lettering()
    rng = np.random.default_rng(config.seed)
    negatives, _ = non_digits(digits, 2 * len(positives), rng, train_lettering)
    if client is not None:
        negatives = np.concatenate([negatives, client.non_digits])
    held_out = {DIGITS: val_digits, REDRAWN: np.concatenate(list(val_redrawn))}
    for kind in KINDS:
        held_out[kind], _ = non_digits(
            val_digits, len(val_digits) // 2, rng, measure_lettering, (kind,)
        )
    images = np.concatenate([positives, negatives])
    targets = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = rng.permutation(len(images))
    return Examples(images[order], targets[order].astype(np.float32), held_out)


def train(config: CheckConfig, examples: Examples) -> Any:
    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_check()
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        # Smoothed labels keep scores off 0 and 1, where a threshold would sit on a few
        # saturated digits (a sigmoid reached 1e-7 for 0.3% of MNIST's test digits without).
        loss=keras.losses.BinaryCrossentropy(label_smoothing=0.05),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    model.fit(
        scale_pixels(examples.train_images),
        examples.train_labels,
        batch_size=config.batch_size,
        epochs=config.epochs,
        verbose=2,
    )
    return model


def main(argv: list[str] | None = None) -> int:
    from training.data import load_mnist
    from training.variants import setup_logging

    defaults = CheckConfig()
    parser = argparse.ArgumentParser(
        prog="mnist-digit-check",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MNIST_DATA_DIR"),
        help="MNIST IDX directory (env MNIST_DATA_DIR); unset: keras.datasets.mnist",
    )
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--flag-rate", type=float, default=defaults.flag_rate, help="of held-out digits"
    )
    parser.add_argument("--version", type=int, default=defaults.version)
    parser.add_argument(
        "--realworld-set",
        type=Path,
        help="client-like pictures of TRAINING digits to learn from too (python -m "
        "devtools.client_frames --output PATH, or devtools.realworld_set --split train); with "
        "--non-digit-set",
    )
    parser.add_argument(
        "--non-digit-set",
        type=Path,
        help="client-like pictures of non-digits to learn from too (python -m "
        "devtools.pictures.non_digits --output PATH); with --realworld-set",
    )
    args = parser.parse_args(argv)
    if not 0 < args.flag_rate < 0.5:
        parser.error(f"--flag-rate must be in (0, 0.5). Received: {args.flag_rate!r}")
    if (args.realworld_set is None) != (args.non_digit_set is None):
        parser.error(
            "--realworld-set and --non-digit-set go together (digits and non-digits "
            "drawn alike, or the check learns how pictures were drawn)"
        )
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1. Received: {args.epochs!r}")
    setup_logging()
    config = CheckConfig(
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        epochs=args.epochs,
        seed=args.seed,
        flag_rate=args.flag_rate,
        version=args.version,
        realworld_set=args.realworld_set,
        non_digit_set=args.non_digit_set,
    )
    started = time.perf_counter()
    data = load_mnist(config.data_dir)
    client = None
    if config.realworld_set and config.non_digit_set:
        client = ClientPictures.read(config.realworld_set, config.non_digit_set)
    examples = make_examples(config, data.train_images, client)
    logger.info("%d training pictures (half digits) made", len(examples.train_labels))
    model = train(config, examples)
    manifest = write_check(model, config, examples)
    logger.info(
        "wrote %s in %.0f s: threshold %.4f, flagged %s",
        config.output_dir,
        time.perf_counter() - started,
        manifest.threshold,
        manifest.measured,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
