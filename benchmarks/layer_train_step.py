"""Train-step time of our normalization layers against their Keras built-in equivalents.

Same shapes, same weights, one run, interleaved: for each layer a tf.function (optionally
XLA-compiled) that runs forward, backward and an SGD update, timed as the median over rounds.

    python -m benchmarks.layer_train_step [--jit] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from training.layers import (
    GroupNormalization,
    InstanceNormalization,
    LayerNormalization,
)

SHAPES = {"tutorial": (64, 26, 26, 10), "cnn": (64, 28, 28, 32)}
PAIRS = {
    "group": (
        lambda c: GroupNormalization(5 if c == 10 else 8),
        lambda c: keras.layers.GroupNormalization(5 if c == 10 else 8),
    ),
    "instance": (lambda c: InstanceNormalization(), lambda c: keras.layers.GroupNormalization(-1)),
    "layer": (lambda c: LayerNormalization(), lambda c: keras.layers.LayerNormalization()),
}


def train_step(layer: keras.layers.Layer, x: tf.Tensor, jit: bool):  # noqa: ANN201
    layer.build(x.shape)
    variables = layer.trainable_variables

    @tf.function(jit_compile=jit)
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x, training=True) - 0.5))
        for variable, gradient in zip(variables, tape.gradient(loss, variables), strict=True):
            variable.assign_sub(0.01 * gradient)
        return loss

    step()  # trace and compile outside the timing
    return step


def time_steps(steps: dict[str, object], rounds: int, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            samples[name].append((time.perf_counter() - start) / repeats * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jit", action="store_true", help="XLA-compile the train steps")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(
        f"device {device}, jit_compile={args.jit}; median ms per train step over {args.rounds} rounds"
    )
    print(f"{'shape':<20}{'layer':<10}{'ours':>9}{'keras':>9}{'ours/keras':>12}")
    for shape_name, shape in SHAPES.items():
        x = tf.constant(np.random.default_rng(0).normal(1.0, 2.0, shape).astype("float32"))
        for variant, (ours, theirs) in PAIRS.items():
            steps = {
                "ours": train_step(ours(shape[-1]), x, args.jit),
                "keras": train_step(theirs(shape[-1]), x, args.jit),
            }
            times = time_steps(steps, args.rounds, args.repeats)
            label = f"{shape_name} {shape[1]}x{shape[2]}x{shape[3]}"
            print(
                f"{label:<20}{variant:<10}{times['ours']:>9.3f}{times['keras']:>9.3f}"
                f"{times['ours'] / times['keras']:>12.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
