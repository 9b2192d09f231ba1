"""Pick the device setup for training: memory growth, mixed precision and distribution strategy.

On CPU-only machines (CI included) everything falls back to float32 and the default strategy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from training.variants import PRECISIONS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSetup:
    """What `configure_devices` chose; logged once and recorded in the model manifest."""

    gpus: int
    compute_capability: tuple[int, int] | None
    precision: str
    strategy: Any

    def describe(self) -> dict[str, Any]:
        return {
            "gpus": self.gpus,
            "compute_capability": list(self.compute_capability or []) or None,
            "precision": self.precision,
            "strategy": type(self.strategy).__name__,
        }


def choose_precision(compute_capability: tuple[int, int] | None) -> str:
    """bfloat16 from Ampere (8.0) on, float16 from Volta (7.0), float32 on older GPUs or CPU."""
    if compute_capability is None:
        return "float32"
    if compute_capability >= (8, 0):
        return "mixed_bfloat16"
    if compute_capability >= (7, 0):
        return "mixed_float16"
    return "float32"


def configure_devices(precision: str = "auto") -> DeviceSetup:
    """Enable memory growth on every GPU, set the global dtype policy, pick a strategy."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}"
        )
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Without memory growth TensorFlow maps the whole card at start-up, starving other
        # processes (a second trainer, the serving container) on a shared GPU.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as error:  # raised once the GPU has been initialized
            logger.warning("could not enable memory growth on %s: %s", gpu.name, error)
    capability = _lowest_compute_capability(gpus)
    chosen = choose_precision(capability) if precision == "auto" else precision
    keras.mixed_precision.set_global_policy(chosen)
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    setup = DeviceSetup(len(gpus), capability, chosen, strategy)
    logger.info(
        "devices: %d GPU(s)%s, precision %s, strategy %s",
        setup.gpus,
        f" (compute capability {capability[0]}.{capability[1]})" if capability else "",
        chosen,
        type(strategy).__name__,
    )
    return setup


def _lowest_compute_capability(gpus: list[Any]) -> tuple[int, int] | None:
    """The weakest card decides: every replica must support the chosen dtype."""
    capabilities = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        if "compute_capability" in details:
            capabilities.append(tuple(details["compute_capability"]))
    return min(capabilities) if capabilities else None
