"""What can be trained: the normalization variants, architectures and precisions, named once.

No TensorFlow here: the command-line tools read these before importing it.
"""

from __future__ import annotations

import logging
import os
from ctypes.util import find_library
from pathlib import Path

# What the service serves, and `mnist-train --variant all` trains: our own normalizations.
VARIANTS: tuple[str, ...] = ("group", "instance", "layer")
# Keras' BatchNormalization where ours sit: the baseline the normalization study compares with
# (trained and exported only when named; its statistics come from the batch, see
# docs/training.md).
BASELINES: tuple[str, ...] = ("batch",)
TRAINABLE: tuple[str, ...] = VARIANTS + BASELINES
ARCHITECTURES: tuple[str, ...] = ("tutorial", "cnn")
DEFAULT_ARCHITECTURE = "cnn"
PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def setup_logging() -> None:
    """Timestamped INFO logs; TensorFlow's C++ chatter down to errors (set before it loads),
    and on a machine without NVIDIA's driver down to fatal ones: there TensorFlow's only error
    is that it found no GPU (`failed call to cuInit`), which a CPU run expects."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_nvidia_driver() else "3")


def has_nvidia_driver() -> bool:
    """Whether NVIDIA's kernel driver or its CUDA library is on this machine."""
    return Path("/proc/driver/nvidia/version").exists() or find_library("cuda") is not None
