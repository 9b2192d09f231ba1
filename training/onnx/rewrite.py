"""Make normalization cheap in the exported ONNX graph.

tf2onnx translates our layers op by op, in the Keras (NHWC) layout: a 5-D reshape, broadcast
Sub/Mul for the statistics and a broadcast multiply-add, plus a Transpose pair around every
convolution because ONNX convolutions are NCHW. onnxruntime runs those broadcasts slowly (they
dominated its profile) and the transposes cost as much again.

This pass replaces each normalization that follows a Conv2D with onnxruntime's own kernels,
fed straight from the convolution's NCHW output:

* instance: `InstanceNormalization(x, gamma, beta)`;
* group: `Reshape(N, groups, -1) -> InstanceNormalization -> Reshape(N, C, H, W)`, then the
  per-channel affine;
* layer (channel axis): `InstanceNormalization` over an (N, H*W, C) view, whose "instances"
  are the pixels (see `_layer_normalization`), then the per-channel affine.

The per-channel affine is a 1x1 depthwise Conv (weights gamma, bias beta) when a ReLU follows,
otherwise a BatchNormalization. onnxruntime runs convolutions in its blocked NCHWc layout and
converts every tensor that leaves it for another kernel and back; a constant-weight Conv stays
in the blocked layout and the ReLU fuses into it, so BatchNormalization + Relu + conversion
become conversion + one Conv (cnn group, batch 1: 1.32x -> 1.26x the normalization-free
network's time).

What is left is mostly the layout conversion itself: `benchmarks/normalization_cost.py` prints
a "floor", the normalization-free network with one Abs kernel where each normalization sits.
On the cnn at batch 64 that floor is already 1.30-1.37x the network's time, and the models are
1.44-1.56x.

Export verifies parity afterwards, so a rewrite that changed the numbers would fail the export
rather than ship.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.onnx.graph import scope_node, scope_output, static_shapes

logger = logging.getLogger(__name__)

NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]
# Layer normalization over fewer channels than this reduces over the NCHW channel axis (see
# `_layer_normalization`); 16 is also onnxruntime's blocked-layout width on AVX-512.
SHORT_ROW = 16


@dataclass(frozen=True)
class NormSpec:
    """What the rewrite needs to know of one Keras normalization layer."""

    name: str  # the Keras layer name (a TensorFlow name scope in the ONNX node names)
    conv_name: str  # the Conv2D layer feeding it
    kind: str  # "group", "instance" or "layer"
    channels: int  # the convolution's filters
    groups: int
    epsilon: float
    gamma: np.ndarray | None
    beta: np.ndarray | None
    spatial: tuple[int, int]  # (H, W) of the convolution's output
    relu_follows: bool  # the next layer is a ReLU (onnxruntime can fuse it into a Conv)


def norm_specs(model: Any) -> list[NormSpec]:
    """Specs of the normalization layers over the channel axis that directly follow a Conv2D
    with a static output size."""
    import keras

    from training.layers import GroupNormalization, LayerNormalization

    specs = []
    layers = [*model.layers, None]
    for previous, layer, following in zip(layers, layers[1:], layers[2:], strict=False):
        if not isinstance(layer, GroupNormalization | LayerNormalization):
            continue
        axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
        if not isinstance(previous, keras.layers.Conv2D) or [a % 4 for a in axes] != [3]:
            logger.info("normalization %s left as converted (not after a Conv2D)", layer.name)
            continue
        height, width = previous.output.shape[1:3]
        if height is None or width is None:
            logger.info("normalization %s left as converted (dynamic image size)", layer.name)
            continue
        specs.append(
            NormSpec(
                name=layer.name,
                conv_name=previous.name,
                kind=_kind(layer),
                channels=previous.filters,
                groups=getattr(layer, "groups", 1),
                epsilon=layer.epsilon,
                gamma=None if layer.gamma is None else np.asarray(layer.gamma.numpy(), np.float32),
                beta=None if layer.beta is None else np.asarray(layer.beta.numpy(), np.float32),
                spatial=(height, width),
                relu_follows=_is_relu(following),
            )
        )
    return specs


def _kind(layer: Any) -> str:
    from training.layers import InstanceNormalization, LayerNormalization

    if isinstance(layer, LayerNormalization):
        return "layer"
    return "instance" if isinstance(layer, InstanceNormalization) else "group"


def _is_relu(layer: Any) -> bool:
    import keras

    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        plain = config["max_value"] is None and not config["negative_slope"]
        return plain and not config["threshold"]
    return isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.relu


def rewrite_normalizations(model: onnx.ModelProto, specs: list[NormSpec]) -> None:
    """Replace each spec'd normalization subgraph, in place; leaves the old nodes dead."""
    graph = model.graph
    shapes = static_shapes(model)
    for spec in specs:
        conv_output = scope_node(graph, spec.conv_name, "Conv").output[0]
        layer_output = scope_output(graph, spec.name)
        layout = _layout(shapes.get(layer_output), spec.channels)
        if layout is None:
            logger.info("normalization %s left as converted (layout unknown)", spec.name)
            continue
        new_nodes, initializers, result = _replacement(spec, conv_output, layout)
        graph.initializer.extend(initializers)
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name == layer_output:
                    node.input[index] = result
        graph.node.extend(new_nodes)


def _layout(shape: list[int | None] | None, channels: int) -> str | None:
    """tf2onnx may have moved the layer's result to NCHW; tell which layout it is in."""
    if shape is None or len(shape) != 4:
        return None
    if shape[3] == channels and shape[1] != channels:
        return "NHWC"
    if shape[1] == channels and shape[3] != channels:
        return "NCHW"
    return None


class _Builder:
    """Collects new nodes and initializers under one name prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, f"{self.prefix}/{name}"))
        return f"{self.prefix}/{name}"

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{self.prefix}/{op}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _replacement(
    spec: NormSpec, conv_nchw: str, layout: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """New nodes computing the layer's output, in `layout`, from the convolution's output."""
    build = _Builder(f"{spec.name}_rewritten")
    if spec.kind == "layer":
        out = _layer_normalization(build, spec, conv_nchw)
    elif spec.kind == "instance":
        gamma, beta = _affine(spec)
        out = build.node(
            "InstanceNormalization",
            [conv_nchw, build.const("gamma", gamma), build.const("beta", beta)],
            epsilon=spec.epsilon,
        )
    else:
        out = _group_normalization(build, spec, conv_nchw)
    if layout == "NHWC":
        out = build.node("Transpose", [out], perm=NCHW_TO_NHWC)
    return build.nodes, build.initializers, out


def _affine(spec: NormSpec) -> tuple[np.ndarray, np.ndarray]:
    """gamma and beta, with the identity standing in for a disabled scale or center."""
    gamma = spec.gamma if spec.gamma is not None else np.ones(spec.channels, np.float32)
    beta = spec.beta if spec.beta is not None else np.zeros(spec.channels, np.float32)
    return gamma, beta


def _nchw_affine(build: _Builder, spec: NormSpec, standardized: str) -> str:
    """gamma * x + beta per channel of an NCHW tensor."""
    gamma, beta = _affine(spec)
    channels = spec.channels
    if spec.relu_follows:
        # A 1x1 depthwise convolution that absorbs the ReLU (see the module docstring).
        weights = build.const("gamma_depthwise", gamma.reshape(channels, 1, 1, 1))
        return build.node(
            "Conv", [standardized, weights, build.const("beta", beta)], group=channels
        )
    # Otherwise an inference BatchNormalization (mean 0, variance 1): one pass in NCHW.
    mean = build.const("zero_mean", np.zeros(channels, np.float32))
    variance = build.const("unit_variance", np.ones(channels, np.float32))
    return build.node(
        "BatchNormalization",
        [standardized, build.const("gamma", gamma), build.const("beta", beta), mean, variance],
        epsilon=0.0,
    )


def _group_normalization(build: _Builder, spec: NormSpec, x: str) -> str:
    """(N, C, H, W) -> (N, groups, C/groups*H*W): instance-normalize each group, restore shape,
    then the per-channel affine."""
    channels = spec.channels
    grouped = build.node("Reshape", [x, build.const("group_shape", np.array([0, spec.groups, -1]))])
    ones = build.const("ones", np.ones(spec.groups, np.float32))
    zeros = build.const("zeros", np.zeros(spec.groups, np.float32))
    standardized = build.node("InstanceNormalization", [grouped, ones, zeros], epsilon=spec.epsilon)
    # A constant target keeps the shapes static, which onnxruntime's layout pass needs to keep
    # the tensors that follow in its blocked layout.
    target = build.const("nchw_shape", np.array([0, channels, *spec.spatial]))
    return _nchw_affine(build, spec, build.node("Reshape", [standardized, target]))


def _layer_normalization(build: _Builder, spec: NormSpec, x: str) -> str:
    """Each pixel's channels standardized, then the per-channel affine.

    onnxruntime's LayerNormalization kernel is slow on rows this short (10-64 channels),
    worse still on two threads. Its InstanceNormalization computes the same statistics when the
    pixels are the "channels" of an (N, H*W, C) view (cnn, 2 threads: 2.65x -> 1.94x the twin's
    time at batch 1, 2.83x -> 1.89x at batch 64; 1 thread: 1.63x -> 1.52x at batch 64). Below
    SHORT_ROW channels even that pays too much per row, and reductions over the NCHW channel
    axis win (tutorial, batch 64: 1.92x -> 1.56x on 1 thread, 2.96x -> 1.66x on 2).
    """
    height, width = spec.spatial
    pixels, channels = height * width, spec.channels
    if channels < SHORT_ROW:
        return _nchw_affine(build, spec, _standardize_channel_axis(build, spec, x))
    nhwc = build.node("Transpose", [x], perm=NCHW_TO_NHWC)
    rows = build.node("Reshape", [nhwc, build.const("rows", np.array([0, pixels, channels]))])
    ones = build.const("ones", np.ones(pixels, np.float32))
    zeros = build.const("zeros", np.zeros(pixels, np.float32))
    standardized = build.node("InstanceNormalization", [rows, ones, zeros], epsilon=spec.epsilon)
    image = build.node(
        "Reshape", [standardized, build.const("nhwc", np.array([0, height, width, channels]))]
    )
    nchw = build.node("Transpose", [image], perm=NHWC_TO_NCHW)
    return _nchw_affine(build, spec, nchw)


def _standardize_channel_axis(build: _Builder, spec: NormSpec, x: str) -> str:
    """(x - mean) / sqrt(var + eps) over axis 1 of an NCHW tensor, statistics in two passes."""
    centered = build.node("Sub", [x, build.node("ReduceMean", [x], axes=[1], keepdims=1)])
    squares = build.node("Mul", [centered, centered])
    variance = build.node("ReduceMean", [squares], axes=[1], keepdims=1)
    epsilon = build.const("epsilon", np.array(spec.epsilon, np.float32))
    inverse_std = build.node(
        "Reciprocal", [build.node("Sqrt", [build.node("Add", [variance, epsilon])])]
    )
    return build.node("Mul", [centered, inverse_std])
