"""The MNIST classifiers: the tutorial's network and a stronger default, per normalization variant.

Input: (N, 28, 28) float32 in [0, 1] (see `mnist_shared.preprocessing.scale_pixels`).
Output: (N, 10) probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from training.layers import GroupNormalization, InstanceNormalization, LayerNormalization
from training.variants import ARCHITECTURES, DEFAULT_ARCHITECTURE, TRAINABLE

# The default network's convolution widths: two blocks at 28x28 and 14x14.
CNN_FILTERS = (32, 32, 64, 64)
# Group size for the default network: 8 groups of 4 or 8 channels.
CNN_GROUPS = 8


def normalization_layer(
    variant: str, arch: str, channels: int, name: str, channels_per_group: int | None = None
) -> keras.layers.Layer:
    """The variant's normalization over the channel axis of an NHWC activation. Group
    normalization takes `channels_per_group` when given (the study's Table 4 sweep)."""
    if variant == "group":
        # The tutorial splits its 10 channels into 5 groups of 2.
        groups = 5 if arch == "tutorial" else min(CNN_GROUPS, channels)
        if channels_per_group is not None:
            if channels % channels_per_group:
                raise ValueError(
                    f"`channels_per_group`={channels_per_group} does not divide the {channels} "
                    f"channels of {name!r}."
                )
            groups = channels // channels_per_group
        return GroupNormalization(groups=groups, axis=3, name=name)
    if variant == "instance":
        return InstanceNormalization(
            axis=3,
            center=True,
            scale=True,
            beta_initializer="random_uniform",
            gamma_initializer="random_uniform",
            name=name,
        )
    if variant == "layer":
        return LayerNormalization(axis=3, center=True, scale=True, name=name)
    if variant == "batch":
        return keras.layers.BatchNormalization(axis=3, name=name)
    raise ValueError(f"Unknown `variant` {variant!r}; choose one of {', '.join(TRAINABLE)}.")


def build_classifier(
    variant: str,
    arch: str = DEFAULT_ARCHITECTURE,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    *,
    normalize: bool = True,
    jit_compile: bool | str = "auto",
    channels_per_group: int | None = None,
    steps_per_execution: int = 1,
    ema_momentum: float | None = None,
) -> keras.Model:
    """Build and compile one classifier. `normalize=False` builds the normalization-free twin
    (same layers and weight shapes otherwise) used to measure what normalization costs;
    `channels_per_group` sizes group normalization's groups instead of the default count;
    `steps_per_execution` runs that many training steps per call into the backend (less Python
    overhead for small batches; the steps are the same); `ema_momentum` keeps an exponential
    moving average of the weights in the optimizer (`keras.callbacks.SwapEMAWeights` puts it in
    the model for validation and at the end of training)."""
    if variant not in TRAINABLE:
        raise ValueError(f"Unknown `variant` {variant!r}; choose one of {', '.join(TRAINABLE)}.")
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown `arch` {arch!r}; choose one of {', '.join(ARCHITECTURES)}.")
    if ema_momentum is not None and not 0.0 < ema_momentum < 1.0:
        raise ValueError(
            f"`ema_momentum` must be in (0, 1) or None for no average. Received: {ema_momentum!r}"
        )
    norm = _norm_factory(variant, arch, normalize, channels_per_group)
    body = _tutorial_body if arch == "tutorial" else _cnn_body
    inputs = keras.Input(shape=(28, 28), dtype="float32", name="image")
    outputs = body(keras.layers.Reshape((28, 28, 1), name="add_channel")(inputs), norm)
    model = keras.Model(inputs, outputs, name=f"mnist_{arch}_{variant}")
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate, use_ema=ema_momentum is not None, ema_momentum=ema_momentum or 0.99
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def training_callbacks(patience: int, ema_momentum: float | None) -> list[keras.callbacks.Callback]:
    """Early stopping on the validation loss (the best weights restored), judging the moving
    average of the weights where the optimizer keeps one: it goes into the model at each
    epoch's end, before early stopping reads it, and stays there after training."""
    callbacks: list[keras.callbacks.Callback] = []
    if ema_momentum is not None:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    callbacks.append(
        keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
    )
    return callbacks


NormFactory = Callable[[int, str], keras.layers.Layer]


def _norm_factory(
    variant: str, arch: str, normalize: bool, channels_per_group: int | None
) -> NormFactory:
    if not normalize:
        return lambda channels, name: keras.layers.Identity(name=name)
    return lambda channels, name: normalization_layer(
        variant, arch, channels, name, channels_per_group
    )


def _tutorial_body(x: Any, norm: NormFactory) -> Any:
    """Exactly the tutorial: Conv2D(10, 3x3) -> normalization -> Flatten -> Dense -> Dense."""
    x = keras.layers.Conv2D(10, kernel_size=(3, 3), data_format="channels_last", name="conv")(x)
    x = norm(10, "norm")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    return keras.layers.Dense(10, activation="softmax", name="probabilities", dtype="float32")(x)


def _cnn_body(x: Any, norm: NormFactory) -> Any:
    """Two blocks of (conv -> norm -> relu) x 2 -> max-pool, then a small dense head.

    About 9.5 M multiply-adds per image: a few hundred microseconds on one CPU core.
    """
    for block, filters in enumerate((CNN_FILTERS[:2], CNN_FILTERS[2:]), start=1):
        for index, width in enumerate(filters, start=1):
            name = f"block{block}_conv{index}"
            # The normalization's beta makes a convolution bias redundant.
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=name)(x)
            x = norm(width, f"block{block}_norm{index}")(x)
            x = keras.layers.Activation("relu", name=f"block{block}_relu{index}")(x)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.2, name="dropout_features")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    return keras.layers.Dense(10, activation="softmax", name="probabilities", dtype="float32")(x)
