"""Export a trained classifier to `models/<variant>/<version>/`: SavedModel, ONNX, .keras, manifest.

The version directory is written under a temporary name and renamed into place only after the
parity check passes, so a failed export never leaves a half-written version for the service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mnist_shared.manifest import (
    MANIFEST_NAME,
    Evaluation,
    Manifest,
    PrecisionTwin,
    TensorSpec,
    hash_artifacts,
    latest_version,
)
from mnist_shared.preprocessing import IMAGE_SIZE, scale_pixels
from training.plots import plot_histories

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-5
PARITY_MIN_IMAGES = 1000
PARITY_IMAGES = 2000  # what training and mnist-export check (the first test images)
INPUT_SPEC = TensorSpec(
    name="image",
    dtype="float32",
    shape=[None, IMAGE_SIZE, IMAGE_SIZE],
    description="Grayscale digit, white on black, pixels scaled to [0, 1].",
)
OUTPUT_SPEC = TensorSpec(
    name="probabilities", dtype="float32", shape=[None, 10], description="Softmax over digits 0-9."
)


REALWORLD_SET_HELP = (
    "client-like pictures by kind (python -m devtools.realworld_set): the INT8 twin must also "
    "read each kind within 0.5 points of fp32"
)


class ExportParityError(RuntimeError):
    """The exported artifacts do not reproduce the Keras model's outputs."""


@dataclass(frozen=True)
class ExportRequest:
    """What a training run hands to the exporter besides the model itself."""

    variant: str
    architecture: str
    test_accuracy: float
    test_samples: int
    parity_images: np.ndarray  # uint8 (N, 28, 28), N >= PARITY_MIN_IMAGES
    training: dict[str, Any]
    data: dict[str, Any]
    version: int | None = None  # None: next free version
    evaluations: dict[str, Evaluation] = field(default_factory=dict)  # held-out corrections
    # Images for the INT8 twin (`training.onnx.quantize`): uint8 calibration images from the
    # training split, and the test split with its labels for the gate. None: no twin.
    int8_data: Int8Data | None = None


@dataclass(frozen=True)
class Int8Data:
    calibration_images: np.ndarray  # uint8 (N, 28, 28)
    test_images: np.ndarray  # uint8 (M, 28, 28)
    test_labels: np.ndarray  # (M,)
    # Client-like pictures by kind, as the service frames them: uint8 (K, 28, 28) and labels.
    kinds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_splits(
        cls,
        train_images: np.ndarray,
        test_images: np.ndarray,
        labels: np.ndarray,
        seed: int = 0,
        realworld_set: Path | None = None,
    ) -> Int8Data:
        """CALIBRATION_IMAGES training images drawn with `seed`, the whole test split, and the
        pictures of `realworld_set` (an .npz written by `python -m devtools.realworld_set`)."""
        from training.onnx.quantize import CALIBRATION_IMAGES

        rng = np.random.default_rng(seed)
        chosen = rng.permutation(len(train_images))[:CALIBRATION_IMAGES]
        kinds = read_realworld_set(realworld_set) if realworld_set else {}
        return cls(train_images[np.sort(chosen)], test_images, labels, kinds)


def read_realworld_set(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{kind: (uint8 images (K, 28, 28), labels (K,))} from a set written by
    `python -m devtools.realworld_set`."""
    try:
        with np.load(path) as archive:
            images, labels, kinds = archive["images"], archive["labels"], archive["kinds"]
    except (OSError, KeyError, ValueError) as error:
        raise SystemExit(
            f"--realworld-set {path} cannot be read ({error}); write one with "
            "python -m devtools.realworld_set --output PATH"
        ) from None
    return {str(kind): (images[kinds == kind], labels[kinds == kind]) for kind in np.unique(kinds)}


def serving_function(model: Any) -> Any:
    """The one inference entry point both exports are made from: image -> probabilities."""
    import tensorflow as tf

    signature = tf.TensorSpec(INPUT_SPEC.shape, tf.float32, name=INPUT_SPEC.name)

    @tf.function(input_signature=[signature])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_SPEC.name: model(image, training=False)}

    return serve


def share_like(version_dir: Path, parent: Path) -> None:
    """Give the version the permissions of the directory it goes into: `mkdtemp` makes it
    0700, which a server running as another user (compose's API image, a Kubernetes pod) cannot
    read. Directories take the parent's mode, files the same without the execute bits."""
    mode = stat.S_IMODE(parent.stat().st_mode)
    for path in [version_dir, *version_dir.rglob("*")]:
        path.chmod(mode if path.is_dir() else mode & 0o666)


def export_model(model: Any, request: ExportRequest, models_dir: Path) -> Path:
    """Write every artifact and the manifest; return the final version directory."""
    variant_dir = models_dir / request.variant
    variant_dir.mkdir(parents=True, exist_ok=True)
    version = request.version or (latest_version(variant_dir) or 0) + 1
    final_dir = variant_dir / str(version)
    if final_dir.exists():
        raise FileExistsError(f"{final_dir} already exists; pass another --version or remove it.")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=variant_dir))
    try:
        parity = _write_artifacts(model, staging, request.parity_images)
        if history := request.training.get("history"):  # the version carries its own curves
            plot_histories({request.variant: history}, staging / "training_curves.png")
        precisions = reduced_precisions(staging / "model.onnx", request.int8_data)
        files = hash_artifacts(staging)
        _manifest(request, version, parity, files, precisions).write(staging)
        share_like(staging, variant_dir)
        staging.rename(final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s version %d to %s", request.variant, version, final_dir)
    return final_dir


def _write_artifacts(model: Any, out_dir: Path, parity_images: np.ndarray) -> dict[str, Any]:
    import keras

    serve = serving_function(model)
    model.save(out_dir / "model.keras")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.write_out(str(out_dir / "saved_model"), verbose=False)
    convert_to_onnx(model, out_dir / "model.onnx")
    return check_parity(model, out_dir, parity_images)


def reduced_precisions(onnx_path: Path, data: Int8Data | None) -> dict[str, PrecisionTwin]:
    """The INT8 twin's record (its file written beside `onnx_path` if the gate keeps it)."""
    if data is None:
        return {}
    from training.onnx.quantize import Labelled, int8_twin

    report = int8_twin(
        onnx_path,
        scale_pixels(data.calibration_images),
        Labelled(scale_pixels(data.test_images), data.test_labels),
        {
            kind: Labelled(scale_pixels(images), labels)
            for kind, (images, labels) in data.kinds.items()
        },
    )
    logger.info("int8 twin: %s", report.record())
    return {report.precision: PrecisionTwin(**report.record())}


def convert_to_onnx(model: Any, path: Path, *, rewrite: bool = True) -> None:
    """tf2onnx conversion of `serving_function(model)`, optimized for onnxruntime (normalizations
    on its own kernels, static flattening; see `training.onnx.optimize`) unless `rewrite=False`."""
    import onnx
    import tf2onnx

    from training.onnx.optimize import optimize_for_onnxruntime

    serve = serving_function(model)
    proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=serve.input_signature, opset=ONNX_OPSET
    )
    if rewrite:
        proto = optimize_for_onnxruntime(proto, model)
    onnx.save(proto, str(path))


def check_parity(model: Any, out_dir: Path, images: np.ndarray) -> dict[str, Any]:
    """Keras, the reloaded SavedModel and onnxruntime must agree; raise ExportParityError if not."""
    import onnxruntime as ort
    import tensorflow as tf

    if len(images) < PARITY_MIN_IMAGES:
        raise ValueError(f"parity needs >= {PARITY_MIN_IMAGES} images, got {len(images)}")
    x = scale_pixels(images)
    expected = model.predict(x, batch_size=256, verbose=0)
    signature = tf.saved_model.load(str(out_dir / "saved_model")).signatures["serving_default"]
    saved = signature(image=tf.constant(x))[OUTPUT_SPEC.name].numpy()
    session = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run([OUTPUT_SPEC.name], {INPUT_SPEC.name: x})[0]
    report: dict[str, Any] = {"images": len(x), "tolerance": PARITY_TOLERANCE}
    for backend, actual in (("savedmodel", saved), ("onnx", onnx_out)):
        max_diff = float(np.abs(actual - expected).max())
        argmax_mismatches = int((actual.argmax(1) != expected.argmax(1)).sum())
        report[backend] = {"max_abs_diff": max_diff, "argmax_mismatches": argmax_mismatches}
        if max_diff > PARITY_TOLERANCE or argmax_mismatches:
            raise ExportParityError(
                f"{backend} export disagrees with Keras on {len(x)} images: max abs difference "
                f"{max_diff:.2e} (limit {PARITY_TOLERANCE:.0e}), {argmax_mismatches} different "
                "argmax. The export was discarded."
            )
    logger.info("parity ok: %s", report)
    return report


def _manifest(
    request: ExportRequest,
    version: int,
    parity: dict[str, Any],
    files: dict[str, str],
    precisions: dict[str, PrecisionTwin],
) -> Manifest:
    return Manifest(
        variant=request.variant,
        version=version,
        architecture=request.architecture,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        test_accuracy=request.test_accuracy,
        test_samples=request.test_samples,
        input=INPUT_SPEC,
        output=OUTPUT_SPEC,
        onnx_opset=ONNX_OPSET,
        training=request.training,
        data=request.data,
        parity=parity,
        libraries=library_versions(),
        files=files,
        evaluations=request.evaluations,
        precisions=precisions,
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def main(argv: list[str] | None = None) -> int:
    """`mnist-export`: export an existing .keras model as a new version (no training)."""
    from training.data import accuracy_on_test_split, load_mnist
    from training.variants import ARCHITECTURES, TRAINABLE, setup_logging

    parser = argparse.ArgumentParser(
        prog="mnist-export",
        description=main.__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("keras_file", type=Path, help="a model.keras written by mnist-train")
    parser.add_argument("--variant", required=True, choices=TRAINABLE, help="the model's variant")
    parser.add_argument(
        "--architecture", choices=ARCHITECTURES, default="cnn", help="recorded in the manifest"
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="export here")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MNIST_DATA_DIR"),
        help="MNIST IDX directory (env MNIST_DATA_DIR); unset: keras.datasets.mnist",
    )
    parser.add_argument("--version", type=int, default=None, help="unset: the next free one")
    parser.add_argument("--realworld-set", type=Path, help=REALWORLD_SET_HELP)
    args = parser.parse_args(argv)
    setup_logging()

    import keras

    import training.layers  # registers the custom layers for deserialization

    model = keras.saving.load_model(args.keras_file)
    data = load_mnist(args.data_dir)
    accuracy = accuracy_on_test_split(model, data)
    command = shlex.join(["mnist-export", *(sys.argv[1:] if argv is None else argv)])
    # Re-exporting a model that came from mnist-train keeps its training record.
    source_manifest = args.keras_file.parent / MANIFEST_NAME
    training = (
        {**Manifest.read(args.keras_file.parent).training, "reexported_with": command}
        if source_manifest.is_file()
        else {"command": command, "source": str(args.keras_file)}
    )
    request = ExportRequest(
        variant=args.variant,
        architecture=args.architecture,
        test_accuracy=accuracy,
        test_samples=len(data.test_labels),
        parity_images=data.test_images[:PARITY_IMAGES],
        training=training,
        data=data.describe(),
        version=args.version,
        int8_data=Int8Data.from_splits(
            data.train_images,
            data.test_images,
            data.test_labels,
            realworld_set=args.realworld_set,
        ),
    )
    print(export_model(model, request, args.models_dir))
    return 0
