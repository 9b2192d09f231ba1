"""`mnist-train`'s settings: the run's config (saved in every manifest it exports) and the
command line that fills it. Importing this module imports no TensorFlow, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

from training.export import REALWORLD_SET_HELP
from training.training_set import CLIENT_FRAMES_HELP
from training.variants import ARCHITECTURES, DEFAULT_ARCHITECTURE, PRECISIONS, TRAINABLE, VARIANTS


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
    ema_momentum: float | None = None  # None: no moving average of the weights
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
        "--ema-momentum",
        type=float,
        default=defaults.ema_momentum,
        help="keep an exponential moving average of the weights (e.g. 0.999), validate and "
        "export it; unset: the weights as trained",
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
    if args.ema_momentum is not None and not 0.0 < args.ema_momentum < 1.0:
        p.error(f"--ema-momentum must be in (0, 1), e.g. 0.999, got {args.ema_momentum}")
    return TrainConfig(
        variants=VARIANTS if args.variant == "all" else (args.variant,),
        **{k: v for k, v in vars(args).items() if k != "variant"},
        command=shlex.join(["mnist-train", *(sys.argv[1:] if argv is None else argv)]),
    )
