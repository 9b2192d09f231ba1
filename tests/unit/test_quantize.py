"""The INT8 twin (`training.onnx.quantize`): the gate's arithmetic and reasons, and a real
twin of a committed model that reads the test split as fp32 does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from devtools import REPO_ROOT
from mnist_shared.preprocessing import scale_pixels
from training.export import Int8Data
from training.onnx.quantize import INT8_FILE, MIN_AGREEMENT, gate, int8_twin

SPEEDS = (100.0, 200.0)


def _one_hot(digits: np.ndarray) -> np.ndarray:
    return np.eye(10, dtype=np.float32)[digits]


def test_a_twin_that_reads_as_fp32_passes():
    labels = np.arange(1000) % 10
    report = gate(_one_hot(labels), _one_hot(labels), labels, SPEEDS)
    assert report.passed_gate and report.reason == "" and report.file == INT8_FILE
    assert report.agreement == 1.0 and report.test_accuracy == report.fp32_test_accuracy == 1.0
    assert report.record()["cpu_us_per_image"] == 100.0


def test_a_twin_that_disagrees_too_often_is_refused_with_its_reason():
    labels = np.arange(1000) % 10
    changed = labels.copy()
    changed[:3] = (changed[:3] + 1) % 10  # 99.7% agreement, 0.3 points of accuracy lost
    report = gate(_one_hot(labels), _one_hot(changed), labels, SPEEDS)
    assert not report.passed_gate and report.file is None
    assert report.agreement == pytest.approx(0.997)
    assert report.reason == (
        "test accuracy 99.70% is more than 0.1% below fp32's 100.00%; its digit is fp32's on "
        "99.70% of the test images, under 99.8%"
    )


def test_one_changed_digit_in_a_thousand_passes_at_the_limit():
    labels = np.arange(1000) % 10
    changed = labels.copy()
    changed[:1] = (changed[:1] + 1) % 10
    assert gate(_one_hot(labels), _one_hot(changed), labels, SPEEDS).passed_gate


def test_the_int8_twin_of_a_committed_model_reads_the_test_split_as_fp32(mnist, tmp_path):
    version_dir = next(path for path in sorted((REPO_ROOT / "models" / "group").iterdir()))
    source = tmp_path / "model.onnx"
    shutil.copy(version_dir / "model.onnx", source)
    data = Int8Data.from_splits(mnist.train_images, mnist.test_images, mnist.test_labels)
    report = int8_twin(
        source,
        scale_pixels(data.calibration_images),
        scale_pixels(data.test_images),
        data.test_labels,
    )
    assert report.passed_gate, report.reason
    assert (tmp_path / INT8_FILE).is_file()
    assert report.fp32_test_accuracy == pytest.approx(0.9923)  # the manifest's figure
    assert report.test_accuracy >= report.fp32_test_accuracy - 0.001
    assert report.agreement >= MIN_AGREEMENT
    assert report.cpu_us_per_image > 0 and report.fp32_cpu_us_per_image > 0
