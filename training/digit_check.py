"""`mnist-digit-check`: train the digit check, calibrate its threshold, export it to ONNX.

The check (`mnist_shared.digit_check`) is a small CNN reading the classifiers' 28x28 input
and scoring how much it looks like one digit. It learns from MNIST's training digits (and
redrawn copies of them, `training.augment`, as client pictures look after framing) against
letters, symbols, scribbles and several digits written together (`training.non_digits`),
all framed by the function serving frames uploads with. Its threshold is set on held-out
digits so that it flags `--flag-rate` of them; the manifest records what it then flags of
held-out digits and of non-digits drawn in font families it never trained on.

    mnist-digit-check --data-dir ../shared/data/mnist --output-dir models/digit_check
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_shared.digit_check import INPUT_NAME, OUTPUT_NAME, DigitCheckManifest
from mnist_shared.manifest import sha256_file
from mnist_shared.preprocessing import IMAGE_SIZE, scale_pixels
from training.non_digits import KINDS, fonts, non_digits, split_fonts

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-5
DIGITS = "digits"  # held-out MNIST digits as they are
REDRAWN = "redrawn_digits"  # the same, redrawn as client pictures look


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
    """Client-like pictures as the service framed them (`devtools.realworld_set --split train`,
    `devtools.pictures.non_digits`): uint8 (N, 28, 28) each."""

    digits: np.ndarray
    non_digits: np.ndarray

    @classmethod
    def read(cls, realworld_set: Path, non_digit_set: Path) -> ClientPictures:
        return cls(np.load(realworld_set)["images"], np.load(non_digit_set)["images"])


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
    from training.data import split_validation

    labels = np.zeros(len(train_images), np.int64)  # the digits' classes do not matter here
    digits, _, val_digits, _ = split_validation(
        train_images, labels, config.validation_fraction, config.seed
    )
    pool = augmented_pool(np.concatenate([digits, val_digits]), config.redrawn_copies, config.seed)
    redrawn, val_redrawn = pool[:, : len(digits)], pool[:, len(digits) :]
    positives = np.concatenate([digits, *redrawn, *([client.digits] if client else [])])
    train_fonts, measure_fonts = split_fonts(fonts())
    rng = np.random.default_rng(config.seed)
    negatives, _ = non_digits(digits, 2 * len(positives), rng, train_fonts)
    if client is not None:
        negatives = np.concatenate([negatives, client.non_digits])
    held_out = {DIGITS: val_digits, REDRAWN: np.concatenate(list(val_redrawn))}
    for kind in KINDS:
        held_out[kind], _ = non_digits(
            val_digits, len(val_digits) // 2, rng, measure_fonts, (kind,)
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


def calibrate(digit_scores: np.ndarray, flag_rate: float) -> float:
    """The score below which `flag_rate` of these held-out digits fall."""
    return float(np.quantile(digit_scores, flag_rate))


def measure(scores: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    """Share flagged (score below the threshold) of each kind of held-out picture."""
    return {kind: round(float(np.mean(s < threshold)), 4) for kind, s in scores.items()}


def export_onnx(model: Any, path: Path) -> None:
    """tf2onnx from a tf.function (its Keras 3 entry point fails on Keras 3 models)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    signature = tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[signature])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[signature], opset=17)
    onnx.save(proto, str(path))


def onnx_scores(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: scale_pixels(images)})[0]


def write_check(model: Any, config: CheckConfig, examples: Examples) -> DigitCheckManifest:
    """Export, check parity, calibrate and measure on the exported file, and move the
    directory into place only when all of it succeeded."""
    from training.export import library_versions, share_like

    output = config.output_dir
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        export_onnx(model, staging / "model.onnx")
        scores = {k: onnx_scores(staging / "model.onnx", v) for k, v in examples.held_out.items()}
        keras_scores = model.predict(scale_pixels(examples.held_out[DIGITS]), verbose=0)
        difference = float(np.abs(keras_scores - scores[DIGITS]).max())
        if difference > PARITY_TOLERANCE:
            raise RuntimeError(f"ONNX export differs from Keras by {difference:.2e}; discarded")
        threshold = calibrate(np.concatenate([scores[DIGITS], scores[REDRAWN]]), config.flag_rate)
        manifest = DigitCheckManifest(
            version=config.version,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            sha256=sha256_file(staging / "model.onnx"),
            threshold=threshold,
            calibration={
                "flag_rate": config.flag_rate,
                "held_out_digits": len(scores[DIGITS]) + len(scores[REDRAWN]),
                "parity_max_abs_diff": difference,
            },
            measured=measure(scores, threshold),
            training={**asdict(config), "output_dir": str(output), "command": _command()},
            libraries=library_versions(),
        )
        manifest.write(staging)
        share_like(staging, output.parent)
        _replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _replace(staging: Path, output: Path) -> None:
    """`output` becomes `staging`; a previous check is removed only once the new one is there."""
    previous = output.with_name(f".{output.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if output.exists():
        output.rename(previous)
    staging.rename(output)
    shutil.rmtree(previous, ignore_errors=True)


def _command() -> str:
    return shlex.join(["mnist-digit-check", *sys.argv[1:]])


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
        "devtools.realworld_set --split train --output PATH); with --non-digit-set",
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
