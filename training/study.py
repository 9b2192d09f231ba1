"""`mnist-study`: test error against batch size for each normalization (Wu & He, 2018, Figure 1).

Reads top to bottom: the grid -> the data -> one run per (normalization, batch size, seed) ->
the JSON of every run -> the table and the plot. Every run sees the same number of training
images (`--epochs` passes over the training split) with the learning rate scaled linearly with
the batch size, from the same seed, without augmentation; it is evaluated on the test split.
A finished run is kept in the JSON and not trained again: an interrupted study resumes.

    mnist-study --data-dir ../shared/data/mnist                  # the full grid (hours on a CPU)
    mnist-study --data-dir ../shared/data/mnist --quick          # two batch sizes, two norms

Only Keras (no TensorFlow import): the same command runs under KERAS_BACKEND=jax on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.variants import setup_logging

logger = logging.getLogger(__name__)

BATCH_SIZES = (2, 4, 8, 16, 32, 64)
# The paper's normalizations, and group normalization at other channels per group (its
# Table 4). On the tutorial network's 10 channels: 1 (= instance), 2 (`group`: its 5 groups),
# 5 and 10 (= layer).
NORMALIZATIONS = ("batch", "group", "instance", "layer", "group-c5")
QUICK = {"batch_sizes": (8, 32), "normalizations": ("batch", "group"), "seeds": 1, "epochs": 1}
BASE_BATCH, BASE_LEARNING_RATE = 32, 1e-3  # the learning rate at BASE_BATCH, scaled linearly
# Training steps per call into the backend: at 2 images a step, Python's overhead per call was
# most of a step's time (22.7 -> 13.0 ms per step with 50 on this CPU). Same steps, same result.
STEPS_PER_EXECUTION = 25


@dataclass(frozen=True)
class Cell:
    normalization: str
    batch_size: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.normalization}/b{self.batch_size}/s{self.seed}"

    @property
    def learning_rate(self) -> float:
        return BASE_LEARNING_RATE * self.batch_size / BASE_BATCH


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mnist-study", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("--data-dir", type=Path, help="MNIST IDX files; default: Keras' downloader")
    p.add_argument("--output-dir", type=Path, default=Path("runs/study"))
    p.add_argument("--arch", choices=("tutorial", "cnn"), default="tutorial")
    p.add_argument("--normalizations", default=",".join(NORMALIZATIONS))
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    p.add_argument("--seeds", type=int, default=3, help="runs per cell, seeds 0..N-1")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training split")
    p.add_argument("--train-limit", type=int, help="use the first N training images")
    p.add_argument("--quick", action="store_true", help=f"a small grid: {QUICK}")
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes = ",".join(map(str, QUICK["batch_sizes"]))
        args.normalizations = ",".join(QUICK["normalizations"])
        args.seeds, args.epochs = QUICK["seeds"], QUICK["epochs"]
    args.normalizations = tuple(args.normalizations.split(","))
    args.batch_sizes = tuple(int(size) for size in args.batch_sizes.split(","))
    for name in args.normalizations:
        _variant_and_group_size(name)  # an unknown name fails here, before any training
    return args


def _variant_and_group_size(name: str) -> tuple[str, int | None]:
    """`group-c4` -> ("group", 4); `layer` -> ("layer", None)."""
    variant, _, size = name.partition("-c")
    if variant not in ("batch", "group", "instance", "layer") or (size and variant != "group"):
        raise SystemExit(
            f"unknown normalization {name!r}: use batch, group, instance, layer "
            "or group-c<channels per group>"
        )
    return variant, int(size) if size else None


def run_cell(cell: Cell, arch: str, epochs: int, data: Any) -> dict[str, Any]:
    """Train one model from `cell.seed` and evaluate it on the test split."""
    import keras

    from mnist_shared.preprocessing import scale_pixels
    from training.models import build_classifier

    keras.utils.set_random_seed(cell.seed)
    variant, per_group = _variant_and_group_size(cell.normalization)
    model = build_classifier(
        variant, arch, cell.learning_rate, channels_per_group=per_group, jit_compile=False,
        steps_per_execution=STEPS_PER_EXECUTION,
    )  # fmt: skip
    images, labels = scale_pixels(data.train_images), data.train_labels
    timer, step_seconds = _step_timer()
    started = time.perf_counter()
    model.fit(
        images, labels, batch_size=cell.batch_size, epochs=epochs, verbose=0, callbacks=[timer]
    )
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(
        scale_pixels(data.test_images), data.test_labels, batch_size=500, verbose=0
    )
    return asdict(cell) | {
        "learning_rate": cell.learning_rate,
        "test_error": 1.0 - float(accuracy),
        "train_seconds": seconds,
        "ms_per_step": 1000 * statistics.median(step_seconds),
        "images_seen": epochs * len(images),
    }


def _step_timer() -> tuple[Any, list[float]]:
    """A Keras callback that times each call into the backend (Keras calls the batch hooks
    once per STEPS_PER_EXECUTION steps, fewer at an epoch's end), and the list of seconds per
    step it fills, one entry a call (the median leaves out the first calls' tracing)."""
    import keras

    per_step: list[float] = []
    started, last_step = [0.0], [-1]

    def begin(batch: int, logs: Any) -> None:
        started[0] = time.perf_counter()

    def end(batch: int, logs: Any) -> None:
        steps = batch - last_step[0] if batch > last_step[0] else batch + 1  # a new epoch
        last_step[0] = batch
        per_step.append((time.perf_counter() - started[0]) / max(1, steps))

    callback = keras.callbacks.LambdaCallback(on_train_batch_begin=begin, on_train_batch_end=end)
    return callback, per_step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    from training.data import load_mnist

    data = load_mnist(args.data_dir)
    if args.train_limit:
        data = dataclasses.replace(
            data,
            train_images=data.train_images[: args.train_limit],
            train_labels=data.train_labels[: args.train_limit],
        )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results_path = args.output_dir / "study.json"
    study = _load(results_path, args)
    cells = [
        Cell(name, size, seed)
        for name in args.normalizations
        for size in args.batch_sizes
        for seed in range(args.seeds)
    ]
    for index, cell in enumerate(cells, start=1):
        if cell.key in study["runs"]:
            print(f"[{index}/{len(cells)}] {cell.key}: done before, kept", flush=True)
            continue
        run = run_cell(cell, args.arch, args.epochs, data)
        study["runs"][cell.key] = run
        _save(results_path, study)  # after every run: an interruption loses one at most
        print(
            f"[{index}/{len(cells)}] {cell.key}: test error {run['test_error']:.2%}, "
            f"{run['ms_per_step']:.1f} ms/step",
            flush=True,
        )
    summary = summarize([study["runs"][cell.key] for cell in cells])
    print(f"test error:\n{table(summary)}\n\nmilliseconds per training step:")
    print(table(summary, cost=True))
    plot(summary, args.output_dir / "study.png", args.arch)
    print(f"wrote {results_path} and {args.output_dir / 'study.png'}")
    return 0


def _load(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The study so far; its runs are kept only if they were made with the same settings."""
    config = {"arch": args.arch, "epochs": args.epochs, "train_limit": args.train_limit,
              "steps_per_execution": STEPS_PER_EXECUTION,
              "base_batch": BASE_BATCH, "base_learning_rate": BASE_LEARNING_RATE,
              "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow")}  # fmt: skip
    if path.is_file():
        study = json.loads(path.read_text())
        if study.get("config") == config:
            return study
        logger.warning("%s was made with other settings (%s): starting over", path, study["config"])
    return {"config": config, "runs": {}}


def _save(path: Path, study: dict[str, Any]) -> None:
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(study, indent=1))
    partial.replace(path)  # atomic: a crash leaves the previous file whole


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """Mean and spread (sample standard deviation; 0 for one seed) of test error and step time
    per normalization and batch size."""
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["normalization"], {}).setdefault(run["batch_size"], []).append(run)
    return {
        name: {size: _stats(cell_runs) for size, cell_runs in sorted(by_size.items())}
        for name, by_size in grouped.items()
    }


def _stats(runs: list[dict[str, Any]]) -> dict[str, float]:
    errors = [run["test_error"] for run in runs]
    return {
        "error_mean": statistics.fmean(errors),
        "error_spread": statistics.stdev(errors) if len(errors) > 1 else 0.0,
        "ms_per_step": statistics.fmean(run["ms_per_step"] for run in runs),
        "seeds": len(runs),
    }


def table(summary: dict[str, dict[int, dict[str, float]]], cost: bool = False) -> str:
    """Markdown by normalization and batch size: test error (mean ± spread, %), or with
    `cost` the median milliseconds per training step."""
    sizes = sorted({size for by_size in summary.values() for size in by_size})
    rows = ["| normalization | " + " | ".join(f"batch {s}" for s in sizes) + " |"]
    rows.append("| --- |" + " --- |" * len(sizes))
    for name, by_size in summary.items():
        cells = [_cell(by_size[s], cost) if s in by_size else "" for s in sizes]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(stats: dict[str, float], cost: bool) -> str:
    if cost:
        return f"{stats['ms_per_step']:.1f} ms"
    return f"{stats['error_mean']:.2%} ± {stats['error_spread']:.2%}"


def plot(summary: dict[str, dict[int, dict[str, float]]], path: Path, arch: str) -> None:
    """Test error against batch size, one line per normalization (the paper's Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, by_size in summary.items():
        sizes = list(by_size)
        means = [100 * by_size[s]["error_mean"] for s in sizes]
        spreads = [100 * by_size[s]["error_spread"] for s in sizes]
        axes.errorbar(sizes, means, yerr=spreads, marker="o", capsize=3, label=name)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("images per batch")
    axes.set_ylabel("test error (%)")
    axes.set_title(f"MNIST test error by batch size ({arch} network)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())
