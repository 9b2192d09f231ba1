"""`mnist-train`: train one or all normalization variants, evaluate, export.

Reads top to bottom: config -> devices -> data -> per variant (model, fit, evaluate, export)
-> training-curve plot. The config and the exact command line are saved in every manifest.

    mnist-train --variant all --data-dir ../shared/data/mnist --output-dir models
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from training.export import REALWORLD_SET_HELP, read_realworld_set
from training.training_set import (
    CLIENT_FRAMES_HELP,
    ClientFramesError,
    TrainingSet,
    prepare_training_set,
)
from training.variants import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURE,
    PRECISIONS,
    TRAINABLE,
    VARIANTS,
    setup_logging,
)

logger = logging.getLogger("training")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    variants: tuple[str, ...] = VARIANTS
    arch: str = DEFAULT_ARCHITECTURE
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3  # peak of a cosine decay over all epochs
    seed: int = 0
    data_dir: str | None = None  # None: keras.datasets.mnist (downloads)
    output_dir: str = "models"
    runs_dir: str | None = None  # the run's summary and curves; None: runs/ beside output_dir
    augment: bool = True  # small shifts, turns and zooms of every batch
    redrawn_copies: int = 6  # redrawn versions of each training image (training.augment)
    client_frames: str | None = None  # devtools.client_frames .npz: more versions of each image
    precision: str = "auto"
    validation_fraction: float = 0.1
    patience: int = 20  # epochs without val_loss improvement before stopping
    jit_compile: bool | None = None  # None: XLA on GPU, plain TF on CPU (faster to start)
    export: bool = True
    version: int | None = None
    realworld_set: str | None = None  # client-like pictures for the INT8 twin's gate
    corrections: str | None = None  # a MNIST_FEEDBACK_DIR: corrections from users to train on
    command: str = ""


def _parser(defaults: TrainConfig) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mnist-train",
        description="Train the MNIST normalization classifiers, evaluate them on the test split "
        "and export each as the next version under --output-dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--variant",
        choices=(*TRAINABLE, "all"),
        default="all",
        help=f"what to train; all: {', '.join(VARIANTS)} (batch, the BatchNormalization "
        "baseline, only when named)",
    )
    p.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=defaults.arch,
        help="network (docs/training.md)",
    )
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="most epochs to run")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    p.add_argument(
        "--learning-rate", type=float, default=defaults.learning_rate, help="peak, cosine-decayed"
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="same seed, same weights")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("MNIST_DATA_DIR"),
        help="directory with the four MNIST IDX files (env MNIST_DATA_DIR); "
        "unset: download with keras.datasets.mnist",
    )
    p.add_argument("--output-dir", default=defaults.output_dir, help="models directory")
    p.add_argument(
        "--runs-dir",
        default=defaults.runs_dir,
        help="where the run's summary and curves go, in a new directory of their own "
        "(default: runs/ beside the models directory)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=defaults.augment,
        help="small random shifts, turns and zooms of every batch",
    )
    p.add_argument(
        "--redrawn-copies",
        type=int,
        default=defaults.redrawn_copies,
        help="redrawn copies of each training image (pen width, slant, blur), 0 for none",
    )
    p.add_argument("--client-frames", help=CLIENT_FRAMES_HELP)
    p.add_argument(
        "--precision", choices=PRECISIONS, default=defaults.precision, help="auto: by device"
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=defaults.validation_fraction,
        help="training images held out for early stopping",
    )
    p.add_argument(
        "--patience", type=int, default=defaults.patience, help="epochs without improvement"
    )
    p.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA; unset: on with a GPU",
    )
    p.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=defaults.export,
        help="export each trained variant",
    )
    p.add_argument("--version", type=int, default=None, help="model version; unset: the next")
    p.add_argument("--realworld-set", help=REALWORLD_SET_HELP)
    p.add_argument(
        "--corrections",
        help="a directory of corrections from users (the service's MNIST_FEEDBACK_DIR): a "
        "fifth held out and measured against the serving version for the promotion gate, the "
        "rest mixed into training",
    )
    return p


def parse_args(argv: list[str] | None) -> TrainConfig:
    defaults = TrainConfig()
    p = _parser(defaults)
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "patience"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.redrawn_copies < 0:
        p.error(f"--redrawn-copies must be >= 0, got {args.redrawn_copies}")
    return TrainConfig(
        variants=VARIANTS if args.variant == "all" else (args.variant,),
        **{k: v for k, v in vars(args).items() if k != "variant"},
        command=shlex.join(["mnist-train", *(sys.argv[1:] if argv is None else argv)]),
    )


def train_variant(
    variant: str, config: TrainConfig, data: Any, training_set: TrainingSet, setup: Any
) -> dict[str, Any]:
    """Build, fit (early stopping, best weights restored), evaluate and export one variant."""
    import keras
    import tensorflow as tf

    from training.data import accuracy_on_test_split

    # Same seed, same machine -> same weights: seeded RNGs and deterministic kernels.
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    train, val, train_size = _datasets(config, training_set)
    model = _compiled_model(variant, config, setup, train_size)
    stop = keras.callbacks.EarlyStopping(
        "val_loss", patience=config.patience, restore_best_weights=True
    )
    logger.info("training %s/%s on %d images", variant, config.arch, train_size)
    started = time.perf_counter()
    history = model.fit(
        train, validation_data=val, epochs=config.epochs, callbacks=[stop], verbose=2, shuffle=False
    )
    seconds = time.perf_counter() - started
    accuracy = accuracy_on_test_split(model, data)
    print(
        f"{variant}: test accuracy {accuracy:.4f} on {len(data.test_labels)} images "
        f"({len(history.epoch)} epochs, {seconds:.0f} s)",
        flush=True,
    )
    result = {
        "variant": variant,
        "test_accuracy": accuracy,
        "epochs_run": len(history.epoch),
        "train_seconds": round(seconds, 1),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }
    if training_set.corrections is not None:
        variant_dir = Path(config.output_dir) / variant
        result["evaluations"] = training_set.corrections.evaluation(model, variant_dir)
    if config.export:
        result["export_dir"] = str(_export(model, variant, config, data, setup, result))
    return result


def _datasets(config: TrainConfig, training_set: TrainingSet) -> tuple[Any, Any, int]:
    """(train pipeline, validation pipeline, number of training images)."""
    from training.data import make_dataset

    train = make_dataset(
        training_set.train_images,
        training_set.train_labels,
        config.batch_size,
        shuffle=True,
        augment=config.augment,
        seed=config.seed,
        redrawn=training_set.redrawn,
    )
    val = make_dataset(
        training_set.val_images,
        training_set.val_labels,
        512,
        shuffle=False,
        augment=False,
        seed=config.seed,
    )
    return train, val, len(training_set.train_labels)


def _compiled_model(variant: str, config: TrainConfig, setup: Any, train_size: int) -> Any:
    """The classifier under the device strategy, Adam on a cosine-decayed learning rate."""
    import keras

    from training.models import build_classifier

    jit = config.jit_compile if config.jit_compile is not None else setup.gpus > 0
    with setup.strategy.scope():
        steps = config.epochs * math.ceil(train_size / config.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.01)
        return build_classifier(variant, config.arch, schedule, jit_compile=jit)


def _export(
    model: Any, variant: str, config: TrainConfig, data: Any, setup: Any, result: dict
) -> Path:
    from training.export import PARITY_IMAGES, ExportRequest, Int8Data, export_model

    training_record = {
        **dataclasses.asdict(config),
        "variants": [variant],
        "device": setup.describe(),
        "epochs_run": result["epochs_run"],
        "train_seconds": result["train_seconds"],
        "history": result["history"],
    }
    request = ExportRequest(
        variant=variant,
        architecture=config.arch,
        test_accuracy=result["test_accuracy"],
        test_samples=len(data.test_labels),
        parity_images=data.test_images[:PARITY_IMAGES],
        training=training_record,
        data=data.describe(),
        version=config.version,
        evaluations=result.get("evaluations", {}),
        int8_data=Int8Data.from_splits(
            data.train_images,
            data.test_images,
            data.test_labels,
            realworld_set=Path(config.realworld_set) if config.realworld_set else None,
        ),
    )
    return export_model(model, request, Path(config.output_dir))


def _writable_runs_dir(config: TrainConfig) -> Path | None:
    """Where the run's summary goes, once it and the models directory are known to be writable
    (else None, having said what to do)."""
    from training.run_record import runs_dir_for, unwritable

    output_dir = Path(config.output_dir)
    runs_dir = runs_dir_for(output_dir, config.runs_dir)
    problem = unwritable([output_dir, runs_dir] if config.export else [runs_dir])
    if problem:
        print(
            f"error: cannot write the run's results: {problem}. Make it writable by this user "
            "(with Compose: models/ and runs/ in your checkout, owned by the MNIST_UID:MNIST_GID "
            "the trainer runs as), or choose --output-dir / --runs-dir.",
            file=sys.stderr,
        )
        return None
    return runs_dir


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    setup_logging()
    missing = [name for name in ("tensorflow", "keras", "tf2onnx") if not find_spec(name)]
    if missing:
        print(
            f"error: training needs {', '.join(missing)}, which are not installed: "
            "pip install -e '.[train]' (or run `make train`).",
            file=sys.stderr,
        )
        return 2

    from training.data import DatasetError, load_mnist
    from training.device import configure_devices
    from training.run_record import write_run_record

    runs_dir = _writable_runs_dir(config)
    if runs_dir is None:
        return 2
    if config.export and config.realworld_set:  # read at export: fail now, not after training
        read_realworld_set(Path(config.realworld_set))
    logger.info("config: %s", json.dumps(dataclasses.asdict(config)))
    setup = configure_devices(config.precision)
    try:
        data = load_mnist(config.data_dir)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        training_set = prepare_training_set(config, data)
    except ClientFramesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = [
        train_variant(variant, config, data, training_set, setup) for variant in config.variants
    ]
    run_dir = write_run_record(results, runs_dir)
    print(f"run summary and curves: {run_dir}")
    for r in results:
        print(
            f"{r['variant']:>8}: test accuracy {r['test_accuracy']:.4f}  {r.get('export_dir', '')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
