"""The INT8 twin (`training.onnx.quantize`, `training.precisions`): the gate's arithmetic and
reasons, and a real twin of a committed model, made by `mnist-quantize`, that reads the test
split as fp32 does and loads in the service."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from devtools.committed import committed_models
from mnist_shared.manifest import MANIFEST_NAME, Manifest, latest_version, verify_artifacts
from service.runtime.model_loading import load_version
from training.export import Int8Data, read_realworld_set
from training.onnx.quantize import INT8_FILE, MIN_AGREEMENT, gate
from training.precisions import add_reduced_precisions

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


def test_a_twin_that_loses_a_kind_of_picture_is_refused_naming_it():
    labels = np.arange(1000) % 10
    kinds = {
        "faint_pencil": {"accuracy": 0.97, "fp32_accuracy": 0.98, "pictures": 300},
        "webp": {"accuracy": 0.985, "fp32_accuracy": 0.99, "pictures": 300},  # at the limit
    }
    report = gate(_one_hot(labels), _one_hot(labels), labels, SPEEDS, kinds)
    assert not report.passed_gate and report.file is None
    assert report.reason == (
        "on faint_pencil pictures its accuracy 97.00% is more than 0.5% below fp32's 98.00%"
    )
    assert report.kinds == kinds  # recorded, passed or not


def _version_without_twin(tmp_path: Path) -> Path:
    """The committed group version as exported before twins existed: its fp32 ONNX file (made
    readable by its group only, to see the twin take the same mode) and a manifest without any."""
    source = committed_models() / "group" / str(latest_version(committed_models() / "group"))
    version_dir = tmp_path / "group" / source.name
    version_dir.mkdir(parents=True)
    shutil.copy(source / "model.onnx", version_dir / "model.onnx")
    (version_dir / "model.onnx").chmod(0o640)
    manifest = json.loads((source / MANIFEST_NAME).read_text())
    manifest["precisions"] = {}
    manifest["files"].pop(INT8_FILE, None)
    (version_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    return version_dir


def test_mnist_quantize_gives_a_committed_version_a_twin_that_reads_as_fp32(mnist, tmp_path):
    version_dir = _version_without_twin(tmp_path)
    realworld = (
        tmp_path / "realworld.npz"
    )  # one kind both models misread: compared, not required right
    np.savez(realworld, images=255 - mnist.test_images[:200], labels=mnist.test_labels[:200],
             kinds=np.array(["inverted"] * 200))  # fmt: skip
    data = Int8Data.from_splits(
        mnist.train_images, mnist.test_images, mnist.test_labels, realworld_set=realworld
    )
    manifest = add_reduced_precisions(version_dir, data)
    twin = manifest.precisions["int8"]
    assert twin.passed_gate, twin.reason
    assert twin.kinds["inverted"]["pictures"] == 200
    assert twin.fp32_test_accuracy == pytest.approx(0.9923)  # the manifest's own figure
    assert twin.test_accuracy >= twin.fp32_test_accuracy - 0.001
    assert twin.agreement >= MIN_AGREEMENT and twin.cpu_us_per_image > 0
    assert Manifest.read(version_dir) == manifest  # written
    verify_artifacts(version_dir, manifest, only=[INT8_FILE])  # listed, with its sha256
    assert stat.S_IMODE((version_dir / INT8_FILE).stat().st_mode) == 0o640
    assert not list(version_dir.glob(".*partial"))
    _, backends = load_version(version_dir, threads=1)
    assert {backend.precision for backend in backends} == {"fp32", "int8"}


def test_an_unreadable_realworld_set_says_how_to_make_one(tmp_path):
    with pytest.raises(SystemExit, match="python -m devtools.realworld_set --output PATH"):
        read_realworld_set(tmp_path / "missing.npz")
