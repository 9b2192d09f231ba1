"""Inference backends: onnxruntime (default, no TensorFlow) and the TensorFlow SavedModel.

A backend is a loaded model: `predict(float32 (N, 28, 28)) -> float32 (N, 10)`, thread-safe,
called from the inference thread pool (or, for a lone small request, the event loop: see
`service.runtime.batching`). An ONNX backend built with the digit check folded in answers
(N, 11), each row's digit score after its probabilities (`service.runtime.folded_check`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_shared.manifest import FP32, Manifest, verify_artifacts
from service.errors import BackendUnavailable
from service.runtime.folded_check import SCORED_OUTPUT, fold_digit_check

logger = logging.getLogger(__name__)


class Backend(Protocol):
    name: str
    precision: str
    scores_digits: bool  # answers the digit check's score in an 11th column

    def predict(self, images: np.ndarray) -> np.ndarray: ...

    def predict_lone(self, images: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    """One onnxruntime session of `threads` threads for batches (the inference thread), and
    for lone requests a second one of `lone_session_threads` that splits each operator over the
    machine's idle cores. Its pool threads spin while a run is on (no wake-up between the
    model's operators) and stop the moment it returns, so an idle service burns no CPU.

    `precision` picks the model file: fp32 (the export's own) or a reduced-precision twin
    that passed its gate (`Manifest.precision_files`). `digit_check`: the check's verified ONNX
    model, folded into the sessions' graph (FoldFailed saying why it cannot be)."""

    name = "onnx"

    def __init__(
        self,
        version_dir: Path,
        manifest: Manifest,
        threads: int,
        lone_session_threads: int = 1,
        precision: str = FP32,
        digit_check: bytes | None = None,
    ) -> None:
        file = manifest.precision_files()[precision]
        verify_artifacts(version_dir, manifest, only=[file])
        model = (version_dir / file).read_bytes()
        self._input = manifest.input.name
        self._output = manifest.output.name
        self.scores_digits = digit_check is not None
        if digit_check is not None:
            model = fold_digit_check(model, digit_check, self._input, self._output)
            self._output = SCORED_OUTPUT
        self.precision = precision
        self._session = _onnx_session(model, threads)
        self._lone_session = self._session
        if lone_session_threads > 1:
            self._lone_session = _onnx_session(model, lone_session_threads)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: images})[0]

    def predict_lone(self, images: np.ndarray) -> np.ndarray:
        return self._lone_session.run([self._output], {self._input: images})[0]


def _onnx_session(model: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class SavedModelBackend:
    name = "savedmodel"
    precision = FP32
    scores_digits = False

    def __init__(self, version_dir: Path, manifest: Manifest) -> None:
        if not tensorflow_available():
            raise BackendUnavailable(
                "the savedmodel backend needs TensorFlow, which this deployment does not have. "
                "Use backend=onnx, or install it: pip install -e '.[train]' (Docker: build with "
                "--build-arg WITH_TENSORFLOW=1)."
            )
        import tensorflow as tf

        verify_artifacts(version_dir, manifest, only=[manifest.saved_model_dir + "/"])
        loaded = tf.saved_model.load(str(version_dir / manifest.saved_model_dir))
        # The signature is one concrete function with a dynamic batch dimension: every batch
        # size reuses the same graph, nothing is retraced per request.
        self._signature = loaded.signatures[manifest.saved_model_signature]
        self._loaded = loaded  # keeps the variables alive
        self._input = manifest.input.name
        self._output = manifest.output.name
        self._tf = tf

    def predict(self, images: np.ndarray) -> np.ndarray:
        outputs = self._signature(**{self._input: self._tf.constant(images)})
        return outputs[self._output].numpy()

    predict_lone = predict  # TensorFlow schedules its own threads


BACKENDS: dict[str, type[OnnxBackend] | type[SavedModelBackend]] = {
    backend.name: backend for backend in (OnnxBackend, SavedModelBackend)
}


def installed_backends() -> list[str]:
    """The backends this deployment can run (the SavedModel one needs TensorFlow)."""
    return [name for name in BACKENDS if name != SavedModelBackend.name or tensorflow_available()]


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None
