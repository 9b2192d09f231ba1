"""The digit check folded into a classifier's ONNX graph, so that one session run answers both.

The check reads the same float32 (N, 28, 28) input as the classifiers. Run apart, it cost a
request a second session run (and a lone request the check's run on the event loop beside the
classifier's spinning threads); folded, it is batched with the classifier and split over the
same threads. The folded graph is the classifier's, unchanged, plus the check's nodes under a
prefix reading the classifier's input, and one more output: each row's ten probabilities
followed by its digit score, float32 (N, 11), which the micro-batcher splits by rows as it
splits probabilities. `split_digit_scores` takes an answer apart again.

The artifacts stay as exported and verified: the fold is made in memory at load, from files
whose sha256 the loaders checked.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import compose, helper

from mnist_shared import digit_check

CLASSES = 10
PREFIX = "digit_check/"
SCORED_OUTPUT = "probabilities_and_digit_score"  # float32 (N, 11)


class FoldFailed(ValueError):
    """The check's graph cannot join the classifier's; the message says why."""


def fold_digit_check(classifier: bytes, check: bytes, input_name: str, output_name: str) -> bytes:
    """The classifier's ONNX model with the check's graph beside it, answering SCORED_OUTPUT as
    well as `output_name`; FoldFailed when their inputs or operator sets differ."""
    folded, check_model = onnx.load_from_string(classifier), onnx.load_from_string(check)
    _check_inputs(check_model, input_name)
    _join_opsets(folded, check_model)
    prefixed = compose.add_prefix(check_model, PREFIX, rename_inputs=False)
    graph, score = folded.graph, PREFIX + digit_check.OUTPUT_NAME
    graph.node.extend(prefixed.graph.node)
    graph.initializer.extend(prefixed.graph.initializer)
    column = PREFIX + "score_column"
    graph.node.extend(
        [
            helper.make_node("Unsqueeze", [score, _axes(graph)], [column], PREFIX + "column"),
            helper.make_node(
                "Concat", [output_name, column], [SCORED_OUTPUT], PREFIX + "beside", axis=1
            ),
        ]
    )
    graph.output.append(
        helper.make_tensor_value_info(SCORED_OUTPUT, onnx.TensorProto.FLOAT, [None, CLASSES + 1])
    )
    onnx.checker.check_model(folded)
    return folded.SerializeToString()


def split_digit_scores(answer: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities (N, 10), digit scores (N,) or None) of a model's answer: SCORED_OUTPUT
    when the check was folded in, probabilities alone otherwise."""
    if answer.shape[1] == CLASSES:
        return answer, None
    return answer[:, :CLASSES], answer[:, CLASSES]


def _check_inputs(check: onnx.ModelProto, input_name: str) -> None:
    inputs = [value.name for value in check.graph.input]
    if inputs != [digit_check.INPUT_NAME] or input_name != digit_check.INPUT_NAME:
        raise FoldFailed(
            f"the digit check reads {inputs} and the classifier {input_name!r}: both must read "
            f"one input named {digit_check.INPUT_NAME!r}"
        )


def _join_opsets(classifier: onnx.ModelProto, check: onnx.ModelProto) -> None:
    """The check's operator sets added to the classifier's; FoldFailed where a domain's
    versions differ (a graph imports one version of each)."""
    opsets = {entry.domain or "ai.onnx": entry.version for entry in classifier.opset_import}
    for entry in check.opset_import:
        domain = entry.domain or "ai.onnx"
        if domain not in opsets:
            classifier.opset_import.append(entry)
        elif opsets[domain] != entry.version:
            raise FoldFailed(
                f"the digit check uses {domain} opset {entry.version}, the classifier "
                f"{opsets[domain]}: export both with the same opset"
            )


def _axes(graph: onnx.GraphProto) -> str:
    """The name of an int64 [1] constant (Unsqueeze's axes are an input from opset 13)."""
    name = PREFIX + "axis_1"
    graph.initializer.append(helper.make_tensor(name, onnx.TensorProto.INT64, [1], [1]))
    return name
