"""`mnist-train`: train one or all normalization variants, evaluate, export.

Reads top to bottom: config -> devices -> data -> per variant (model, fit, evaluate, export)
-> training-curve plot. The config and the exact command line are saved in every manifest.

    mnist-train --variant all --data-dir ../shared/data/mnist --output-dir models
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from training.export import read_realworld_set
from training.train_config import TrainConfig, parse_args
from training.training_set import ClientFramesError, TrainingSet, prepare_training_set
from training.variants import setup_logging

logger = logging.getLogger("training")


def train_variant(
    variant: str, config: TrainConfig, data: Any, training_set: TrainingSet, setup: Any
) -> dict[str, Any]:
    """Build, fit (early stopping, best weights restored), evaluate and export one variant."""
    import keras
    import tensorflow as tf

    from training.data import accuracy_on_test_split
    from training.models import training_callbacks

    # Same seed, same machine -> same weights: seeded RNGs and deterministic kernels.
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    train, val, train_size = _datasets(config, training_set)
    model = _compiled_model(variant, config, setup, train_size)
    callbacks = training_callbacks(config.patience, config.ema_momentum)
    logger.info("training %s/%s on %d images", variant, config.arch, train_size)
    started = time.perf_counter()
    history = model.fit(
        train,
        validation_data=val,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=2,
        shuffle=False,
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
        return build_classifier(
            variant, config.arch, schedule, jit_compile=jit, ema_momentum=config.ema_momentum
        )


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
