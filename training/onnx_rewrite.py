"""Make normalization nearly free in the exported ONNX graph.

tf2onnx translates our layers op by op, in the Keras (NHWC) layout: a 5-D reshape, broadcast
Sub/Mul for the statistics and a broadcast multiply-add, plus a Transpose pair around every
convolution because ONNX convolutions are NCHW. onnxruntime runs those broadcasts slowly (they
dominated its profile) and the transposes cost as much again.

This pass replaces each normalization that follows a Conv2D with onnxruntime's own kernels,
fed straight from the convolution's NCHW output:

* instance: `InstanceNormalization(x, gamma, beta)`;
* group: `Reshape(N, groups, -1) -> InstanceNormalization(1, 0) -> Reshape(N, C, H, W)`, then a
  per-channel `Mul(gamma) + Add(beta)` that onnxruntime fuses;
* layer (channel axis): `LayerNormalization(axis=-1)` on the NHWC tensor.

A Transpose back to NHWC keeps every consumer valid, and tf2onnx's optimizer then cancels the
transposes that became pairs. Export verifies parity afterwards, so a rewrite that changed the
numbers would fail the export rather than ship.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

logger = logging.getLogger(__name__)

NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]


@dataclass(frozen=True)
class NormSpec:
    """What the rewrite needs to know of one Keras normalization layer."""

    name: str  # the Keras layer name (a TensorFlow name scope in the ONNX node names)
    conv_name: str  # the Conv2D layer feeding it
    kind: str  # "group", "instance" or "layer"
    groups: int
    epsilon: float
    gamma: np.ndarray | None
    beta: np.ndarray | None


def norm_specs(model: Any) -> list[NormSpec]:
    """Specs of the normalization layers that directly follow a Conv2D over the channel axis."""
    import keras

    from training.layers import GroupNormalization, InstanceNormalization, LayerNormalization

    specs = []
    for previous, layer in zip(model.layers, model.layers[1:], strict=False):
        if not isinstance(layer, GroupNormalization | LayerNormalization):
            continue
        axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
        if not isinstance(previous, keras.layers.Conv2D) or [a % 4 for a in axes] != [3]:
            logger.info("normalization %s left as converted (not after a Conv2D)", layer.name)
            continue
        kind = (
            "layer"
            if isinstance(layer, LayerNormalization)
            else "instance"
            if isinstance(layer, InstanceNormalization)
            else "group"
        )
        specs.append(
            NormSpec(
                name=layer.name,
                conv_name=previous.name,
                kind=kind,
                groups=getattr(layer, "groups", 1),
                epsilon=layer.epsilon,
                gamma=None if layer.gamma is None else np.asarray(layer.gamma.numpy(), np.float32),
                beta=None if layer.beta is None else np.asarray(layer.beta.numpy(), np.float32),
            )
        )
    return specs


def rewrite_normalizations(model: onnx.ModelProto, specs: list[NormSpec]) -> onnx.ModelProto:
    """Replace each spec'd normalization subgraph by onnxruntime kernels; optimize; check."""
    from tf2onnx.graph import GraphUtil

    graph = model.graph
    shapes = _static_shapes(model)
    for spec in specs:
        conv_output = _conv_output(graph, spec.conv_name)
        layer_output = _scope_output(graph, spec.name)
        layout = _layout(shapes.get(layer_output), _channels(spec))
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
    _topological_sort(graph)
    _cancel_transpose_pairs(graph)
    _remove_dead_nodes(graph)
    optimized = GraphUtil.optimize_model_proto(model, catch_errors=False)
    onnx.checker.check_model(optimized)
    logger.info("rewrote %d normalization layers to onnxruntime kernels", len(specs))
    return optimized


def _scope_pattern(layer_name: str) -> re.Pattern[str]:
    # Keras runs each layer under a TensorFlow name scope `<layer>` or `<layer>_<n>`.
    return re.compile(rf"(^|/){re.escape(layer_name)}(_\d+)?/")


def _conv_output(graph: onnx.GraphProto, conv_name: str) -> str:
    pattern = _scope_pattern(conv_name)
    convs = [n for n in graph.node if n.op_type == "Conv" and pattern.search(n.name)]
    if len(convs) != 1:
        raise ValueError(f"expected one ONNX Conv for layer {conv_name}, found {len(convs)}")
    return convs[0].output[0]


def _scope_output(graph: onnx.GraphProto, layer_name: str) -> str:
    """The layer's result: the last tensor (in topological order) that its nodes produce for
    nodes outside it. Earlier ones only feed helper nodes that tf2onnx's optimizer renamed."""
    pattern = _scope_pattern(layer_name)
    inside_names = {n.name for n in graph.node if pattern.search(n.name)}
    consumed_outside = {
        name for n in graph.node if n.name not in inside_names for name in n.input
    } | {o.name for o in graph.output}
    candidates = [
        out
        for n in graph.node
        if n.name in inside_names
        for out in n.output
        if out in consumed_outside
    ]
    if not candidates:
        raise ValueError(f"no output tensor found for layer {layer_name} in the ONNX graph")
    return candidates[-1]


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _channels(spec: NormSpec) -> int:
    return len(spec.gamma if spec.gamma is not None else spec.beta)


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
    channels = _channels(spec)
    gamma = build.const(
        "gamma", spec.gamma if spec.gamma is not None else np.ones(channels, np.float32)
    )
    beta = build.const(
        "beta", spec.beta if spec.beta is not None else np.zeros(channels, np.float32)
    )
    if spec.kind == "layer":
        # onnxruntime's LayerNormalization normalizes trailing axes: run it channels-last.
        nhwc = build.node("Transpose", [conv_nchw], perm=NCHW_TO_NHWC)
        out = build.node("LayerNormalization", [nhwc, gamma, beta], axis=-1, epsilon=spec.epsilon)
        if layout == "NCHW":
            out = build.node("Transpose", [out], perm=NHWC_TO_NCHW)
        return build.nodes, build.initializers, out
    if spec.kind == "instance":
        out = build.node("InstanceNormalization", [conv_nchw, gamma, beta], epsilon=spec.epsilon)
    else:
        out = _group_normalization(build, spec, conv_nchw, gamma, beta, channels)
    if layout == "NHWC":
        out = build.node("Transpose", [out], perm=NCHW_TO_NHWC)
    return build.nodes, build.initializers, out


def _group_normalization(
    build: _Builder, spec: NormSpec, x: str, gamma: str, beta: str, channels: int
) -> str:
    """(N, C, H, W) -> (N, groups, C/groups*H*W): instance-normalize each group, restore shape."""
    group_shape = build.const("group_shape", np.array([0, spec.groups, -1]))
    grouped = build.node("Reshape", [x, group_shape])
    ones = build.const("ones", np.ones(spec.groups, np.float32))
    zeros = build.const("zeros", np.zeros(spec.groups, np.float32))
    standardized = build.node("InstanceNormalization", [grouped, ones, zeros], epsilon=spec.epsilon)
    restored = build.node("Reshape", [standardized, build.node("Shape", [x])])
    # The per-channel affine as an inference BatchNormalization (mean 0, variance 1): one pass
    # over the tensor where Mul + Add take two.
    mean = build.const("zero_mean", np.zeros(channels, np.float32))
    variance = build.const("unit_variance", np.ones(channels, np.float32))
    return build.node("BatchNormalization", [restored, gamma, beta, mean, variance], epsilon=0.0)


def _topological_sort(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or a missing input after the rewrite")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _cancel_transpose_pairs(graph: onnx.GraphProto) -> None:
    """Transpose(p) -> Transpose(inverse of p): consumers of the second read the first's input."""
    producers = {out: n for n in graph.node for out in n.output}
    rename: dict[str, str] = {}
    for n in graph.node:
        if n.op_type != "Transpose":
            continue
        first = producers.get(n.input[0])
        if first is None or first.op_type != "Transpose":
            continue
        outer = list(helper.get_attribute_value(first.attribute[0]))
        inner = list(helper.get_attribute_value(n.attribute[0]))
        if [outer[i] for i in inner] == list(range(len(inner))):
            rename[n.output[0]] = first.input[0]
    graph_outputs = {o.name for o in graph.output}
    for n in graph.node:
        for index, name in enumerate(n.input):
            if name in rename and name not in graph_outputs:
                n.input[index] = rename[name]


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    needed = {o.name for o in graph.output}
    alive = []
    for n in reversed(graph.node):
        if any(out in needed for out in n.output):
            alive.append(n)
            needed.update(n.input)
    del graph.node[:]
    graph.node.extend(reversed(alive))
    unused = [init for init in graph.initializer if init.name not in needed]
    for init in unused:
        graph.initializer.remove(init)
