"""What normalization costs at inference: each variant's ONNX model against its
normalization-free twin (same network and weights, normalization layers removed).

For both architectures and every variant, prints onnxruntime time per image at batch 1 and 64
with 1 and 2 intra-op threads, for the model as exported (normalizations rewritten to
onnxruntime kernels) and, with --compare-plain, as tf2onnx converts it unaided. Models and
their twins run interleaved in the same process, so the ratios hold on a noisy machine.

    python benchmarks/normalization_cost.py [--models-dir models] [--compare-plain]

The committed models are used for the default architecture where present; the tutorial
network is built with seeded random weights (timing does not depend on training).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnxruntime as ort

TARGETS = {1: 1.3, 64: 1.15}  # issue goal: ratio to the twin at batch 1 and 64


def load_or_build(variant: str, arch: str, models_dir: Path):  # noqa: ANN201
    import keras

    import training.layers  # noqa: F401  (registers the layers)
    from mnist_shared.manifest import latest_version
    from training.models import build_classifier

    version = latest_version(models_dir / variant)
    if arch == "cnn" and version is not None:
        model = keras.saving.load_model(models_dir / variant / str(version) / "model.keras")
        if model.name.startswith("mnist_cnn"):
            return model
    keras.utils.set_random_seed(0)
    return build_classifier(variant, arch)


def twin_of(model, variant: str, arch: str):  # noqa: ANN001, ANN201
    """The same network without normalization, sharing every other weight."""
    from training.models import build_classifier

    twin = build_classifier(variant, arch, normalize=False)
    for layer in twin.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return twin


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def per_image_us(
    sessions: dict[str, ort.InferenceSession], batch: int, rounds: int
) -> dict[str, float]:
    """Median time per image of each session, run interleaved round by round."""
    x = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
    repeats = max(1, 256 // batch)
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():  # warm-up
        for _ in range(3):
            s.run(None, {"image": x})
    for _ in range(rounds):
        for name, s in sessions.items():
            start = time.perf_counter()
            for _ in range(repeats):
                s.run(None, {"image": x})
            samples[name].append((time.perf_counter() - start) / (repeats * batch) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--compare-plain", action="store_true", help="also time tf2onnx's plain graph"
    )
    parser.add_argument("--archs", default="tutorial,cnn")
    parser.add_argument(
        "--savedmodel", action="store_true", help="also time the committed SavedModels vs ONNX"
    )
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    from training.export import convert_to_onnx

    print(
        f"onnxruntime {ort.__version__}; time per image in microseconds (median of {args.rounds} rounds)"
    )
    header = (
        f"{'arch':<9}{'variant':<9}{'threads':>7}{'batch':>6}{'twin':>9}{'model':>9}{'ratio':>7}"
    )
    if args.compare_plain:
        header += f"{'plain':>9}{'ratio':>7}"
    print(header + "  target")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            for variant in ("group", "instance", "layer"):
                model = load_or_build(variant, arch, args.models_dir)
                paths = {
                    "twin": Path(tmp) / f"{arch}-{variant}-twin.onnx",
                    "model": Path(tmp) / f"{arch}-{variant}.onnx",
                }
                convert_to_onnx(twin_of(model, variant, arch), paths["twin"])
                convert_to_onnx(model, paths["model"])
                if args.compare_plain:
                    paths["plain"] = Path(tmp) / f"{arch}-{variant}-plain.onnx"
                    convert_to_onnx(model, paths["plain"], rewrite=False)
                for threads in (1, 2):
                    sessions = {name: session(path, threads) for name, path in paths.items()}
                    for batch in (1, 64):
                        times = per_image_us(sessions, batch, args.rounds)
                        ratio = times["model"] / times["twin"]
                        ok = ratio <= TARGETS[batch]
                        failures += not ok
                        line = f"{arch:<9}{variant:<9}{threads:>7}{batch:>6}{times['twin']:>9.1f}{times['model']:>9.1f}{ratio:>7.2f}"
                        if args.compare_plain:
                            line += f"{times['plain']:>9.1f}{times['plain'] / times['twin']:>7.2f}"
                        print(f"{line}  <= {TARGETS[batch]} {'ok' if ok else 'MISSED'}", flush=True)
    print(f"{failures} configuration(s) over target")
    if args.savedmodel:
        savedmodel_vs_onnx(args.models_dir, args.rounds)
    return 1 if failures else 0


def savedmodel_vs_onnx(models_dir: Path, rounds: int) -> None:
    """The committed models through both serving backends, as the service calls them."""
    import tensorflow as tf

    from mnist_shared.manifest import latest_version

    print("\nserving backends, committed models (us per image; SavedModel: its concrete signature)")
    print(f"{'variant':<9}{'batch':>6}{'onnx 1t':>9}{'savedmodel':>11}")
    for variant in ("group", "instance", "layer"):
        version = latest_version(models_dir / variant)
        if version is None:
            continue
        version_dir = models_dir / variant / str(version)
        onnx_session = session(version_dir / "model.onnx", 1)
        signature = tf.saved_model.load(str(version_dir / "saved_model")).signatures[
            "serving_default"
        ]
        for batch in (1, 64):
            x = np.random.default_rng(0).random((batch, 28, 28), dtype=np.float32)
            onnx_us = per_image_us({"onnx": onnx_session}, batch, rounds)["onnx"]
            tensor = tf.constant(x)
            signature(image=tensor)  # warm-up
            repeats = max(1, 256 // batch)
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(repeats):
                    signature(image=tensor)["probabilities"].numpy()
                samples.append((time.perf_counter() - start) / (repeats * batch) * 1e6)
            print(
                f"{variant:<9}{batch:>6}{onnx_us:>9.1f}{statistics.median(samples):>11.1f}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
