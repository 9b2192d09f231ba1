"""The digit check folded into each classifier's graph (`service.runtime.folded_check`): one
session run answers each committed model's probabilities and the check's scores exactly as the
two models run apart do, in every precision and on both sessions; what cannot be folded is
refused saying why, and a folded model's smoke check reads its scores."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from devtools.committed import committed_models
from mnist_shared.digit_check import CHECK_DIR_NAME, INPUT_NAME, OUTPUT_NAME
from mnist_shared.manifest import Manifest, latest_version
from mnist_shared.preprocessing import scale_pixels
from service.runtime.folded_check import FoldFailed, fold_digit_check, split_digit_scores
from service.runtime.model_loading import LoadFailed, load_version, smoke_check

COMMITTED = committed_models()
CHECK = (COMMITTED / CHECK_DIR_NAME / "model.onnx").read_bytes()


def _version_dir(variant: str) -> Path:
    return COMMITTED / variant / str(latest_version(COMMITTED / variant))


def _run_apart(model_file, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classifier = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    check = ort.InferenceSession(CHECK, providers=["CPUExecutionProvider"])
    probabilities = classifier.run(None, {INPUT_NAME: images})[0]
    return probabilities, check.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


@pytest.mark.parametrize("variant", ["group", "instance", "layer"])
@pytest.mark.parametrize("lone_session_threads", [1, 2])
def test_a_folded_session_answers_as_the_classifier_and_the_check_apart(
    mnist, variant, lone_session_threads
):
    version_dir = _version_dir(variant)
    _, backends = load_version(version_dir, 1, lone_session_threads, digit_check=CHECK)
    manifest = Manifest.read(version_dir)
    images = scale_pixels(mnist.test_images[:64])
    for backend in backends:  # fp32 and the INT8 twin
        assert backend.scores_digits
        expected = _run_apart(version_dir / manifest.precision_files()[backend.precision], images)
        for answer in (backend.predict(images), backend.predict_lone(images[:1])):
            probabilities, scores = split_digit_scores(answer)
            rows = len(answer)
            np.testing.assert_allclose(probabilities, expected[0][:rows], atol=1e-6)
            np.testing.assert_allclose(scores, expected[1][:rows], atol=1e-6)


def test_without_the_check_a_session_answers_probabilities_alone(mnist):
    _, backends = load_version(_version_dir("group"), threads=1)
    answer = backends[0].predict(scale_pixels(mnist.test_images[:3]))
    assert not backends[0].scores_digits and answer.shape == (3, 10)
    assert split_digit_scores(answer)[1] is None


def _classifier() -> bytes:
    return (_version_dir("group") / "model.onnx").read_bytes()


def test_a_check_reading_another_input_is_refused_saying_so():
    check = onnx.load_from_string(CHECK)
    for node in check.graph.node:
        node.input[:] = ["pixels" if name == INPUT_NAME else name for name in node.input]
    check.graph.input[0].name = "pixels"
    with pytest.raises(FoldFailed, match=re.escape("the digit check reads ['pixels']")):
        fold_digit_check(_classifier(), check.SerializeToString(), INPUT_NAME, "probabilities")


def test_a_check_of_another_opset_is_refused_saying_what_to_do():
    check = onnx.load_from_string(CHECK)
    for entry in check.opset_import:
        if entry.domain == "":
            entry.version = 13
    with pytest.raises(
        FoldFailed,
        match="uses ai.onnx opset 13, the classifier 17: export both with the same opset",
    ):
        fold_digit_check(_classifier(), check.SerializeToString(), INPUT_NAME, "probabilities")


class ScoringBackend:
    name, precision, scores_digits = "fake", "fp32", True

    def __init__(self, score: float) -> None:
        self.score = score

    def predict(self, images: np.ndarray) -> np.ndarray:
        answer = np.full((len(images), 11), 0.1, np.float32)
        answer[:, 10] = self.score
        return answer

    predict_lone = predict


def test_the_smoke_check_reads_a_folded_models_scores():
    smoke_check(ScoringBackend(0.5))
    with pytest.raises(LoadFailed, match=r"folded digit check's scores are not all in \[0, 1\]"):
        smoke_check(ScoringBackend(1.5))
