"""End to end: mnist-train on a small IDX copy -> export -> parity, manifest, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from mnist_shared.manifest import Manifest, verify_artifacts
from tests.unit.test_data import _write_idx
from training import export as export_module
from training.train import main as train_main


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory, mnist) -> Path:
    """1,000 real training and 1,000 real test images as IDX files."""
    directory = tmp_path_factory.mktemp("mnist_small")
    _write_idx(directory / "train-images-idx3-ubyte", mnist.train_images[:1000])
    _write_idx(directory / "train-labels-idx1-ubyte", mnist.train_labels[:1000])
    _write_idx(directory / "t10k-images-idx3-ubyte", mnist.test_images[:1000])
    _write_idx(directory / "t10k-labels-idx1-ubyte", mnist.test_labels[:1000])
    return directory


def _train(data_dir: Path, out_dir: Path, *extra: str) -> int:
    args = ["--variant", "group", "--arch", "tutorial", "--epochs", "2", "--batch-size", "64"]
    return train_main([*args, "--data-dir", str(data_dir), "--output-dir", str(out_dir), *extra])


@pytest.fixture(scope="module")
def exported(small_mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "models"  # its runs/ beside it, by default
    assert _train(small_mnist, out) == 0
    return out


def test_export_layout_and_manifest(exported):
    version_dir = exported / "group" / "1"
    manifest = Manifest.read(version_dir)
    assert manifest.variant == "group" and manifest.version == 1
    assert manifest.architecture == "tutorial"
    assert manifest.input.name == "image" and manifest.input.shape == [None, 28, 28]
    assert manifest.output.name == "probabilities" and manifest.output.shape == [None, 10]
    assert manifest.test_samples == 1000 and 0.5 < manifest.test_accuracy <= 1.0
    assert manifest.training["command"].startswith("mnist-train --variant group")
    assert manifest.training["epochs"] == 2 and manifest.training["seed"] == 0
    assert manifest.data["train_samples"] == 1000
    assert manifest.parity["images"] >= 1000
    assert manifest.parity["onnx"]["max_abs_diff"] <= 1e-5
    assert manifest.parity["onnx"]["argmax_mismatches"] == 0
    assert {"model.onnx", "model.keras", "saved_model/saved_model.pb"} <= set(manifest.files)
    assert manifest.libraries["tensorflow"] != "not installed"
    verify_artifacts(version_dir, manifest)
    int8 = manifest.precisions["int8"]  # its file is shipped, and listed, only if it passed
    assert int8.fp32_test_accuracy == pytest.approx(manifest.test_accuracy)
    assert (int8.file in manifest.files) if int8.passed_gate else int8.reason
    assert (version_dir / "model.int8.onnx").is_file() == int8.passed_gate
    assert (version_dir / "training_curves.png").stat().st_size > 1000
    assert "training_curves.png" in manifest.files
    # The run's summary and curves went into a new directory beside the models directory.
    (run_dir,) = (exported.parent / "runs").iterdir()
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert summary["group"]["test_accuracy"] == pytest.approx(manifest.test_accuracy)
    assert (run_dir / "training_curves.png").stat().st_size > 1000


def test_onnx_graph_contract(exported):
    model = onnx.load(exported / "group" / "1" / "model.onnx")
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "image" and graph_output.name == "probabilities"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_manifest_detects_tampering(exported, tmp_path):
    import shutil

    copy = tmp_path / "v1"
    shutil.copytree(exported / "group" / "1", copy)
    with (copy / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match=r"sha256 of model.onnx .* does not match the manifest"):
        verify_artifacts(copy, Manifest.read(copy))


def test_same_seed_same_accuracy_and_next_version(small_mnist, exported, mnist):
    import onnxruntime as ort

    from mnist_shared.preprocessing import scale_pixels

    assert _train(small_mnist, exported) == 0
    first = Manifest.read(exported / "group" / "1")
    second = Manifest.read(exported / "group" / "2")
    assert second.version == 2
    assert second.test_accuracy == first.test_accuracy
    x = scale_pixels(mnist.test_images[:200])
    outputs = [
        ort.InferenceSession(str(exported / "group" / v / "model.onnx")).run(None, {"image": x})[0]
        for v in ("1", "2")
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])  # same seed -> same weights


def test_failed_parity_leaves_nothing_behind(small_mnist, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise export_module.ExportParityError("onnx export disagrees with Keras")

    monkeypatch.setattr(export_module, "check_parity", fail)
    with pytest.raises(export_module.ExportParityError):
        _train(small_mnist, tmp_path, "--epochs", "1")
    assert list((tmp_path / "group").iterdir()) == []


def test_parity_check_catches_a_wrong_export(exported, mnist):
    import keras

    import training.layers  # noqa: F401

    version_dir = exported / "group" / "1"
    model = keras.saving.load_model(version_dir / "model.keras")
    images = mnist.test_images[:1000]
    report = export_module.check_parity(model, version_dir, images)
    assert report["savedmodel"]["max_abs_diff"] <= 1e-5
    weights = model.get_weights()
    model.set_weights([w + 0.05 for w in weights])
    with pytest.raises(
        export_module.ExportParityError, match="disagrees with Keras on 1000 images"
    ):
        export_module.check_parity(model, version_dir, images)


def test_bad_data_dir_is_a_clear_error(tmp_path, capsys):
    assert _train(tmp_path / "missing", tmp_path / "out") == 2
    assert "data directory does not exist" in capsys.readouterr().err


def test_probabilities_are_deterministic_across_backends(exported, mnist):
    import onnxruntime as ort

    from mnist_shared.preprocessing import scale_pixels

    session = ort.InferenceSession(str(exported / "group" / "1" / "model.onnx"))
    x = scale_pixels(mnist.test_images[:5])
    out = session.run(["probabilities"], {"image": x})[0]
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_savedmodel_signature_serves_every_batch_size_without_retracing(exported, mnist):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported / "group" / "1" / "saved_model"))
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, 28, 28] and spec.name == "image"
    graph_before = signature.graph
    for batch in (1, 3, 64):
        x = tf.constant(mnist.test_images[:batch].astype(np.float32) / 255)
        assert signature(image=x)["probabilities"].shape == (batch, 10)
    assert signature.graph is graph_before  # one concrete function, never retraced


@pytest.mark.parametrize("module", ["training.train", "training.export"])
def test_help_lists_defaults_without_importing_tensorflow(module):
    import subprocess
    import sys

    code = (
        f"import sys; from {module} import {'parse_args' if module.endswith('train') else 'main'} as run\n"
        "try:\n    run(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TF LOADED' if 'tensorflow' in sys.modules else 'NO TF')"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert output.rstrip().endswith("NO TF")
    assert "(default: " in output and "{group,instance,layer" in output


def test_corrections_are_trained_on_and_their_held_out_share_measured(small_mnist, mnist, tmp_path):
    """Corrections from users (as POST /feedback keeps them): a share held out, measured by the
    new model and by the version serving before, and recorded for the promotion gate."""
    import shutil

    from devtools.committed import committed_models
    from mnist_shared.corrections import Correction, is_held_out, save_correction
    from mnist_shared.promotion import choose_default

    feedback = tmp_path / "feedback"
    for index in range(40):
        digit = mnist.test_images[2000 + index]
        label = int(mnist.test_labels[2000 + index])
        save_correction(feedback, Correction(digit, label, "group", {"group": 3}, "2026-12-06"))
    held_out = sum(is_held_out(path.name) for path in feedback.glob("*.json"))
    assert 0 < held_out < 40
    out = tmp_path / "models"
    shutil.copytree(committed_models() / "group" / "3", out / "group" / "3")
    assert _train(small_mnist, out, "--corrections", str(feedback)) == 0
    manifest = Manifest.read(out / "group" / "4")
    evaluation = manifest.evaluations["corrections (held out)"]
    assert evaluation.pictures == held_out and 0 <= evaluation.accuracy <= 1
    assert evaluation.baseline_version == 3 and evaluation.baseline_accuracy >= 0.9
    serving = Manifest.read(out / "group" / "3")
    _, verdicts = choose_default({3: serving, 4: manifest}, always=False, tolerance_points=0.1)
    assert "corrections (held out)" in verdicts[4].figures


def test_an_ema_momentum_outside_0_1_is_refused_by_the_cli(capsys):
    from training.train_config import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--ema-momentum", "1.5"])
    assert "--ema-momentum must be in (0, 1), e.g. 0.999, got 1.5" in capsys.readouterr().err
