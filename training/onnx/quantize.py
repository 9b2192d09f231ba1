"""An INT8 twin of the exported ONNX model, kept only if it reads digits as the fp32 model does.

onnxruntime's static quantization, calibrated on training images (already MNIST-framed, scaled
as the service scales them), weights per channel. The operator format with unsigned 8-bit
weights and activations is the one that ran fastest on this project's AVX2 CPUs (a QDQ graph
or signed weights ran no faster than fp32), and the first convolution (raw pixels in) and the
last dense layer (the logits out) stay in float: quantized, they cost the instance and layer
models their agreement with fp32 (docs/performance-log.md). So does the softmax, so that the
probabilities a client reads are as fine as fp32's.

The gate compares the twin with the fp32 model on the test split, and on each kind of
client-like picture when a set of them is given (`devtools.realworld_set` makes one, framed as
the service frames uploads): it is kept only when its test accuracy is at most
`MAX_ACCURACY_DROP` below fp32's, its accuracy on every kind at most `MAX_KIND_ACCURACY_DROP`
below, and its digits agree with fp32's on at least `MIN_AGREEMENT` of the test images;
otherwise export ships fp32 alone and the manifest says why.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_shared.manifest import INT8

logger = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
MAX_ACCURACY_DROP = 0.001  # 0.1 points of test accuracy
MAX_KIND_ACCURACY_DROP = 0.005  # 0.5 points on each kind of client-like picture
MIN_AGREEMENT = 0.998  # share of test images whose digit is fp32's
CALIBRATION_IMAGES = 1000
CALIBRATION_BATCH = 50
SPEED_BATCH = 8  # the service's default largest batch
_EVALUATION_BATCH = 500


@dataclass(frozen=True)
class Labelled:
    """Float32 images (N, 28, 28) in [0, 1] as the model sees them, and their digits."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class PrecisionReport:
    """How a reduced-precision twin compares with fp32, and whether it passed the gate
    (`mnist_shared.manifest.PrecisionTwin` is its record in the manifest)."""

    precision: str
    passed_gate: bool
    reason: str  # why it failed the gate; empty when it passed
    test_accuracy: float
    fp32_test_accuracy: float
    agreement: float  # share of test images with fp32's digit
    max_probability_diff: float
    cpu_us_per_image: float  # at batch SPEED_BATCH, one thread
    fp32_cpu_us_per_image: float
    file: str | None  # the twin's file in the version directory, when it passed
    kinds: dict[str, dict[str, float]]  # kind -> {"accuracy", "fp32_accuracy", "pictures"}

    def record(self) -> dict[str, Any]:
        return asdict(self)


def quantize_int8(source: Path, target: Path, calibration: np.ndarray) -> None:
    """`source` (fp32 ONNX) quantized to `target`, calibrated on `calibration`, float32
    (N, 28, 28) in [0, 1]."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            _CalibrationImages(calibration, _input_name(source)),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            nodes_to_exclude=_kept_in_float(prepared),
        )


def _kept_in_float(path: Path) -> list[str]:
    """The first convolution and the last dense layer (MatMul or Gemm) of the graph, and the
    softmax: quantized, its probabilities would come in steps of 1/256 and not add up to 1."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    first_conv = [node.name for node in nodes if node.op_type == "Conv"][:1]
    last_dense = [node.name for node in nodes if node.op_type in ("MatMul", "Gemm")][-1:]
    softmax = [node.name for node in nodes if node.op_type == "Softmax"]
    return first_conv + last_dense + softmax


def int8_twin(
    source: Path, calibration: np.ndarray, test: Labelled, kinds: dict[str, Labelled]
) -> PrecisionReport:
    """Quantize `source` (ONNX fp32) beside it as INT8_FILE and gate it on the `test` split
    and each of the `kinds` of client-like pictures; the file is removed again when the gate
    refuses it."""
    target = source.parent / INT8_FILE
    quantize_int8(source, target, calibration)
    fp32, int8 = _session(source), _session(target)
    report = gate(
        _probabilities(fp32, test.images),
        _probabilities(int8, test.images),
        test.labels,
        speeds=(_cpu_us_per_image(int8, test.images), _cpu_us_per_image(fp32, test.images)),
        kinds={kind: _kind_accuracy(fp32, int8, pictures) for kind, pictures in kinds.items()},
    )
    if not report.passed_gate:
        target.unlink()
        logger.warning("int8 twin not kept: %s", report.reason)
    return report


def gate(
    fp32: np.ndarray,
    int8: np.ndarray,
    labels: np.ndarray,
    speeds: tuple[float, float],
    kinds: dict[str, dict[str, float]] | None = None,
) -> PrecisionReport:
    """The INT8 twin's report from both models' probabilities on the test split, and their
    accuracy on each kind of client-like picture (`_kind_accuracy`)."""
    kinds = kinds or {}
    fp32_accuracy = float(np.mean(fp32.argmax(1) == labels))
    accuracy = float(np.mean(int8.argmax(1) == labels))
    agreement = float(np.mean(int8.argmax(1) == fp32.argmax(1)))
    reasons = []
    if _dropped(fp32_accuracy, accuracy, MAX_ACCURACY_DROP):
        reasons.append(
            f"test accuracy {accuracy:.2%} is more than {MAX_ACCURACY_DROP:.1%} below fp32's "
            f"{fp32_accuracy:.2%}"
        )
    for kind, scores in kinds.items():
        if _dropped(scores["fp32_accuracy"], scores["accuracy"], MAX_KIND_ACCURACY_DROP):
            reasons.append(
                f"on {kind} pictures its accuracy {scores['accuracy']:.2%} is more than "
                f"{MAX_KIND_ACCURACY_DROP:.1%} below fp32's {scores['fp32_accuracy']:.2%}"
            )
    if agreement < MIN_AGREEMENT - 1e-12:
        reasons.append(
            f"its digit is fp32's on {agreement:.2%} of the test images, under {MIN_AGREEMENT:.1%}"
        )
    return PrecisionReport(
        precision=INT8,
        passed_gate=not reasons,
        reason="; ".join(reasons),
        test_accuracy=accuracy,
        fp32_test_accuracy=fp32_accuracy,
        agreement=agreement,
        max_probability_diff=float(np.abs(int8 - fp32).max()),
        cpu_us_per_image=speeds[0],
        fp32_cpu_us_per_image=speeds[1],
        file=None if reasons else INT8_FILE,
        kinds=kinds,
    )


def _dropped(fp32_accuracy: float, accuracy: float, limit: float) -> bool:
    return fp32_accuracy - accuracy > limit + 1e-12  # 1 - 0.999 is 0.0010000000000000009


def _kind_accuracy(fp32: Any, int8: Any, pictures: Labelled) -> dict[str, float]:
    return {
        "accuracy": _accuracy(int8, pictures),
        "fp32_accuracy": _accuracy(fp32, pictures),
        "pictures": len(pictures.labels),
    }


def _accuracy(session: Any, pictures: Labelled) -> float:
    digits = _probabilities(session, pictures.images).argmax(1)
    return float(np.mean(digits == pictures.labels))


class _CalibrationImages:
    """onnxruntime's CalibrationDataReader over `images`, in batches."""

    def __init__(self, images: np.ndarray, input_name: str) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: images[start : start + CALIBRATION_BATCH]}
            for start in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the service runs it
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _probabilities(session: Any, images: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate(
        [
            session.run(None, {name: images[start : start + _EVALUATION_BATCH]})[0]
            for start in range(0, len(images), _EVALUATION_BATCH)
        ]
    )


def _cpu_us_per_image(session: Any, images: np.ndarray, rounds: int = 5) -> float:
    """CPU microseconds per image at batch SPEED_BATCH, best of `rounds` (CPU time, not wall
    time: a busy machine slows the wall clock, not the work)."""
    name, batch = session.get_inputs()[0].name, images[:SPEED_BATCH]
    for _ in range(10):
        session.run(None, {name: batch})
    best = float("inf")
    for _ in range(rounds):
        runs, started = 0, time.process_time()
        while time.process_time() - started < 0.2:
            session.run(None, {name: batch})
            runs += 1
        best = min(best, (time.process_time() - started) / (runs * len(batch)) * 1e6)
    return best
