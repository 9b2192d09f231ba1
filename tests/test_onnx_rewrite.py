"""The ONNX rewrite to onnxruntime's normalization kernels: lean graphs, unchanged numbers."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training.export import convert_to_onnx
from training.layers import LayerNormalization
from training.models import build_classifier

KERNEL = {
    "group": "InstanceNormalization",
    "instance": "InstanceNormalization",
    "layer": "LayerNormalization",
}


def _randomize_affine(model):
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if weight.path.endswith(("gamma", "beta")):
            weight.assign(rng.normal(0.5, 0.5, weight.shape).astype("float32"))


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )[0]


@pytest.mark.parametrize("arch", ["tutorial", "cnn"])
@pytest.mark.parametrize("variant", ["group", "instance", "layer"])
def test_rewritten_graph_is_lean_and_exact(tmp_path, mnist, variant, arch):
    keras.utils.set_random_seed(0)
    model = build_classifier(variant, arch)
    _randomize_affine(model)
    convert_to_onnx(model, tmp_path / "model.onnx")
    ops = [node.op_type for node in onnx.load(tmp_path / "model.onnx").graph.node]
    norms = 1 if arch == "tutorial" else 4
    assert ops.count(KERNEL[variant]) == norms
    # The statistics' broadcast arithmetic is gone: no Sub, no ReduceMean, no Sqrt.
    assert not {"Sub", "ReduceMean", "Sqrt", "Reciprocal"} & set(ops)
    x = mnist.test_images[:64].astype(np.float32) / 255
    np.testing.assert_allclose(
        _run(tmp_path / "model.onnx", x), model.predict(x, verbose=0), atol=1e-5
    )


def test_unsupported_layout_is_left_as_converted(tmp_path):
    inputs = keras.Input((28, 28))
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    x = LayerNormalization(axis=[1, 2, 3])(x)  # normalizes H, W and C: no onnxruntime kernel
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    convert_to_onnx(model, tmp_path / "model.onnx")
    x = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(
        _run(tmp_path / "model.onnx", x), model.predict(x, verbose=0), atol=1e-5
    )
