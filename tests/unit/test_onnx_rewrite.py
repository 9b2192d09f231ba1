"""The ONNX rewrite to onnxruntime's normalization kernels: lean graphs, unchanged numbers."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training.export import convert_to_onnx
from training.layers import GroupNormalization, LayerNormalization
from training.models import build_classifier
from training.onnx.graph import make_flatten_static, remove_dead_nodes
from training.onnx.rewrite import norm_specs


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
    if (variant, arch) == ("layer", "tutorial"):
        # 10 channels: two reductions over the NCHW channel axis per normalization.
        assert ops.count("ReduceMean") == 2 * norms
    else:
        # onnxruntime's InstanceNormalization kernel, for layer normalization on a view whose
        # instances are the pixels; no broadcast arithmetic for the statistics.
        assert ops.count("InstanceNormalization") == norms
        assert not {"Sub", "ReduceMean", "Sqrt", "Reciprocal"} & set(ops)
    # Every shape is a constant (Keras Flatten's target was computed at run time from Shape).
    assert "Shape" not in ops
    if arch == "tutorial":  # the affine before Flatten -> Dense is folded into the Dense kernel
        assert "BatchNormalization" not in ops
    # Flatten reads the NCHW tensor as it is (the Dense kernel's rows are permuted instead).
    assert ops[ops.index("MatMul") - 2 : ops.index("MatMul")] != ["Transpose", "Reshape"]
    for batch in (64, 1, 3):  # the constant shapes still follow the batch dimension
        x = mnist.test_images[:batch].astype(np.float32) / 255
        np.testing.assert_allclose(
            _run(tmp_path / "model.onnx", x), model.predict(x, verbose=0), atol=1e-5
        )


def test_group_affine_is_a_depthwise_convolution(tmp_path):
    # A constant-weight Conv stays in onnxruntime's blocked layout and absorbs the ReLU.
    keras.utils.set_random_seed(0)
    model = build_classifier("group", "cnn")
    convert_to_onnx(model, tmp_path / "model.onnx")
    graph = onnx.load(tmp_path / "model.onnx").graph
    weights = {init.name: init for init in graph.initializer}
    depthwise = []
    for node in graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group > 1:
            depthwise.append((group, list(weights[node.input[1]].dims)))
    assert depthwise == [(32, [32, 1, 1, 1])] * 2 + [(64, [64, 1, 1, 1])] * 2
    assert "BatchNormalization" not in {node.op_type for node in graph.node}


def test_normalization_without_scale_or_center_is_rewritten(tmp_path):
    inputs = keras.Input((28, 28))
    x = keras.layers.Conv2D(16, 3)(keras.layers.Reshape((28, 28, 1))(inputs))
    x = GroupNormalization(groups=4, axis=-1, center=False, scale=False)(x)
    x = keras.layers.Activation("relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    convert_to_onnx(model, tmp_path / "model.onnx")
    ops = [node.op_type for node in onnx.load(tmp_path / "model.onnx").graph.node]
    assert ops.count("InstanceNormalization") == 1
    x = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(
        _run(tmp_path / "model.onnx", x), model.predict(x, verbose=0), atol=1e-5
    )


def test_remove_dead_nodes_follows_inputs_in_any_order():
    helper = onnx.helper
    nodes = [
        helper.make_node("Relu", ["a"], ["y"], name="last"),  # listed before its producer
        helper.make_node("Neg", ["x"], ["a"], name="first"),
        helper.make_node("Abs", ["x"], ["unused"], name="dead"),
    ]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "g",
        [value("x", onnx.TensorProto.FLOAT, [1])],
        [value("y", onnx.TensorProto.FLOAT, [1])],
    )
    remove_dead_nodes(graph)
    assert [node.name for node in graph.node] == ["last", "first"]


def test_dynamic_image_size_is_left_as_converted(caplog):
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = LayerNormalization(axis=-1, name="norm")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with caplog.at_level("INFO", logger="training.onnx.rewrite"):
        assert norm_specs(model) == []
    assert "normalization norm left as converted (dynamic image size)" in caplog.text


def test_make_flatten_static_refuses_other_nodes():
    graph = onnx.helper.make_graph([], "g", [], [])
    node = onnx.helper.make_node("Transpose", ["x"], ["y"], name="not_a_reshape")
    with pytest.raises(ValueError, match="not_a_reshape is not a Reshape"):
        make_flatten_static(graph, node, 10)


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
