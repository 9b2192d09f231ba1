"""Small ONNX graph queries and passes used after tf2onnx conversion.

Each pass edits `graph` in place and keeps the computed values exactly as they were; the export
checks parity afterwards regardless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

Shapes = dict[str, list[int | None]]


def static_shapes(model: onnx.ModelProto) -> Shapes:
    """Every tensor's inferred shape; None for a dimension known only at run time."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _scope_pattern(layer_name: str) -> re.Pattern[str]:
    # Keras runs each layer under a TensorFlow name scope `<layer>` or `<layer>_<n>`.
    return re.compile(rf"(^|/){re.escape(layer_name)}(_\d+)?/")


def scope_node(graph: onnx.GraphProto, layer_name: str, op_type: str) -> onnx.NodeProto:
    """The one `op_type` node that tf2onnx made for the Keras layer `layer_name`."""
    pattern = _scope_pattern(layer_name)
    nodes = [n for n in graph.node if n.op_type == op_type and pattern.search(n.name)]
    if len(nodes) != 1:
        raise ValueError(f"expected one ONNX {op_type} for layer {layer_name}, found {len(nodes)}")
    return nodes[0]


def scope_output(graph: onnx.GraphProto, layer_name: str) -> str:
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


def topological_sort(graph: onnx.GraphProto) -> None:
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


def cancel_transpose_pairs(graph: onnx.GraphProto) -> None:
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


def make_flatten_static(graph: onnx.GraphProto, reshape: onnx.NodeProto, width: int) -> None:
    """Give a flattening Reshape the constant target `[0, width]` (0: copy the batch dimension).

    tf2onnx computes Keras Flatten's target at run time (Shape, Gather, Slice, Concat, Cast),
    which costs a few microseconds per call and makes onnxruntime keep an extra NCHW copy of the
    tensor only so that Shape can read it.
    """
    allowzero = any(a.name == "allowzero" and a.i for a in reshape.attribute)
    if reshape.op_type != "Reshape" or allowzero:
        raise ValueError(f"{reshape.name} is not a Reshape that copies zero dimensions")
    name = f"{reshape.output[0]}/static_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([0, width], np.int64), name))
    reshape.input[1] = name


@dataclass(frozen=True)
class _Index:
    producers: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    constants: dict[str, onnx.TensorProto]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _Index:
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for name in n.input:
                consumers.setdefault(name, []).append(n)
        producers = {out: n for n in graph.node for out in n.output}
        return cls(producers, consumers, {i.name: i for i in graph.initializer})

    def constant(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.constants[name])

    def dense_users(self, tensor: str) -> list[onnx.NodeProto]:
        """The consumers of `tensor` if all are MatMuls with a constant kernel, else []."""
        users = self.consumers.get(tensor, [])
        if any(u.op_type != "MatMul" or u.input[1] not in self.constants for u in users):
            return []
        return users


def _flattened_nchw(reshape: onnx.NodeProto, source: str, shapes: Shapes) -> tuple[int, ...]:
    """(C, H, W) when `reshape` flattens the static NCHW tensor `source`, else ()."""
    nchw = shapes.get(source)
    if reshape.op_type != "Reshape" or not nchw or len(nchw) != 4 or None in nchw[1:]:
        return ()
    return tuple(nchw[1:])


def _replace_kernel(graph: onnx.GraphProto, matmul: onnx.NodeProto, kernel: np.ndarray) -> None:
    name = f"{matmul.input[1]}/rewritten"
    graph.initializer.append(numpy_helper.from_array(kernel.astype(np.float32), name))
    matmul.input[1] = name


def flatten_channels_first(graph: onnx.GraphProto, shapes: Shapes) -> int:
    """Flatten NCHW tensors as they are and permute the dense weights instead; return how many.

    Keras flattens channels-last, so tf2onnx transposes NCHW -> NHWC before each Flatten that
    feeds a Dense. Permuting the rows of the Dense kernel to NCHW order gives the same products
    without moving the activations (for onnxruntime, one pass over the tensor fewer).
    """
    index, changed = _Index.of(graph), 0
    for reshape in graph.node:
        transpose = index.producers.get(reshape.input[0]) if reshape.input else None
        if transpose is None or transpose.op_type != "Transpose":
            continue
        to_nhwc = list(helper.get_attribute_value(transpose.attribute[0])) == [0, 2, 3, 1]
        dims = _flattened_nchw(reshape, transpose.input[0], shapes)
        users = index.dense_users(reshape.output[0])
        if not to_nhwc or not dims or not users:
            continue
        channels, height, width = dims
        for matmul in users:
            kernel = index.constant(matmul.input[1])
            permuted = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
            _replace_kernel(graph, matmul, permuted.reshape(kernel.shape))
        reshape.input[0] = transpose.input[0]
        changed += 1
    return changed


def fold_affine_into_dense(graph: onnx.GraphProto, shapes: Shapes) -> int:
    """BatchNormalization -> channels-first Flatten -> MatMul: scale the kernel's rows and add
    shift @ kernel to the bias, so that no pass over the activations is left; return how many.
    """
    index, changed = _Index.of(graph), 0
    for reshape in list(graph.node):  # _add_bias appends nodes
        norm = index.producers.get(reshape.input[0]) if reshape.input else None
        if norm is None or norm.op_type != "BatchNormalization" or len(norm.output) != 1:
            continue
        dims = _flattened_nchw(reshape, norm.input[0], shapes)
        users = index.dense_users(reshape.output[0])
        only_reader = index.consumers.get(norm.output[0]) == [reshape]
        if not dims or not users or not only_reader:
            continue
        if any(name not in index.constants for name in norm.input[1:]):
            continue
        scale, shift = _inference_affine(norm, index)
        pixels = dims[1] * dims[2]
        row_scale, row_shift = np.repeat(scale, pixels), np.repeat(shift, pixels)
        for matmul in users:
            kernel = index.constant(matmul.input[1])
            _replace_kernel(graph, matmul, kernel * row_scale[:, None])
            _add_bias(graph, matmul, row_shift @ kernel)
        reshape.input[0] = norm.input[0]
        changed += 1
    return changed


def _inference_affine(norm: onnx.NodeProto, index: _Index) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization's y = scale * x + shift per channel."""
    gamma, beta, mean, variance = (index.constant(name) for name in norm.input[1:5])
    epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
    scale = gamma / np.sqrt(variance + epsilon)
    return scale, beta - mean * scale


def _add_bias(graph: onnx.GraphProto, matmul: onnx.NodeProto, bias: np.ndarray) -> None:
    """Add `bias` to the MatMul's result; onnxruntime fuses it into a Gemm."""
    result = matmul.output[0]
    matmul.output[0] = f"{result}/unbiased"
    name = f"{result}/folded_bias"
    graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), name))
    graph.node.append(helper.make_node("Add", [matmul.output[0], name], [result], name=name))


def remove_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers that no graph output depends on; the order may be any."""
    producers = {out: n for n in graph.node for out in n.output}
    needed = {o.name for o in graph.output}
    pending = list(needed)
    while pending:
        node = producers.pop(pending.pop(), None)
        if node is None:  # a graph input, an initializer, or a node already taken
            continue
        fresh = [name for name in node.input if name not in needed]
        needed.update(fresh)
        pending.extend(fresh)
    alive = [n for n in graph.node if any(out in needed for out in n.output)]
    del graph.node[:]
    graph.node.extend(alive)
    unused = [init for init in graph.initializer if init.name not in needed]
    for init in unused:
        graph.initializer.remove(init)
