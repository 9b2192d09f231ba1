"""What a run trains on: MNIST's training images less a validation part, corrections from
users, redrawn copies (`training.augment`) and client pictures of the same digits framed by the
service (`python -m devtools.client_frames`, given with `mnist-train --client-frames`).

Every version of an image stands in its own row of one (versions, N, 28, 28) pool; the input
pipeline draws one version of each image per epoch (`training.data.make_dataset`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CLIENT_FRAMES_HELP = (
    "an .npz of client pictures of every training digit as the service frames them (python -m "
    "devtools.client_frames --output PATH); each is one more version of its digit to train on"
)


class ClientFramesError(ValueError):
    """--client-frames names a file that cannot be used with this training data."""


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """The training/validation split, and other versions of the training images."""

    train_images: Any
    train_labels: Any
    val_images: Any
    val_labels: Any
    redrawn: Any  # uint8 (versions, N, 28, 28) or None: redrawn copies, then client frames
    corrections: Any = None  # training.corrections.Corrections, with --corrections


def prepare_training_set(config: Any, data: Any) -> TrainingSet:
    """Split off validation images; add corrections, redrawn copies and client frames (once,
    for every variant). `config` is a `training.train_config.TrainConfig`."""
    from training.augment import augmented_pool
    from training.data import split_rows

    train_rows, val_rows = split_rows(
        len(data.train_labels), config.validation_fraction, config.seed
    )
    train_x, train_y = data.train_images[train_rows], data.train_labels[train_rows]
    originals = len(train_y)
    corrections = None
    if config.corrections:
        from training.corrections import Corrections

        corrections = Corrections(Path(config.corrections))
        train_x, train_y = corrections.mixed_into(train_x, train_y)
    frames = None  # read first: a wrong file fails before minutes of redrawing
    if config.client_frames:
        frames = read_client_frames(Path(config.client_frames), len(data.train_labels))
        frames = _with_corrections(frames[:, train_rows], train_x[originals:])
    versions = []
    if config.redrawn_copies:
        versions.append(augmented_pool(train_x, config.redrawn_copies, config.seed))
    if frames is not None:
        versions.append(frames)
    redrawn = np.concatenate(versions) if versions else None
    return TrainingSet(
        train_x, train_y, data.train_images[val_rows], data.train_labels[val_rows], redrawn,
        corrections,
    )  # fmt: skip


def read_client_frames(path: Path, count: int) -> np.ndarray:
    """uint8 (copies, `count`, 28, 28) from a `devtools.client_frames` file made from the same
    `count` training images."""
    try:
        with np.load(path) as stored:
            frames = stored["frames"]
    except (OSError, KeyError, ValueError) as error:
        raise ClientFramesError(
            f"--client-frames {path} cannot be read ({error}); write one with "
            "python -m devtools.client_frames --output PATH"
        ) from error
    if frames.ndim != 4 or frames.shape[1:] != (count, 28, 28) or frames.dtype != np.uint8:
        raise ClientFramesError(
            f"--client-frames {path} holds frames of shape {frames.shape} ({frames.dtype}), "
            f"not (copies, {count}, 28, 28) uint8 for these {count} training images: write it "
            "again from the same --data-dir with python -m devtools.client_frames"
        )
    logger.info("client frames from %s: %d per training image", path, len(frames))
    return frames


def _with_corrections(frames: np.ndarray, corrections: np.ndarray) -> np.ndarray:
    """Client frames of the training rows, each correction standing as itself in every copy
    (it is already a client picture, as the service framed it)."""
    if not len(corrections):
        return frames
    repeated = np.broadcast_to(corrections, (len(frames), *corrections.shape))
    return np.concatenate([frames, repeated], axis=1)
