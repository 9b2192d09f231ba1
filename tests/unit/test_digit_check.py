"""The digit check: its training material (`training.non_digits`), calibration and manifest,
the committed check's figures on the test split and on client pictures of non-digits, and its
loading in the service (refusals saying why)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from devtools.committed import committed_models
from devtools.pictures.non_digits import framed_non_digits
from mnist_shared.digit_check import CHECK_DIR_NAME, CHECK_MANIFEST, DigitCheckManifest
from mnist_shared.preprocessing import scale_pixels
from service.runtime.digit_check import DigitCheckUnavailable, load_digit_check
from training.digit_check_export import calibrate, measure
from training.hand_letters import split_shapes
from training.non_digits import (
    KINDS,
    LETTERS,
    SYMBOLS,
    fonts,
    non_digits,
    split_fonts,
    split_lettering,
)

CHECK_DIR = committed_models() / CHECK_DIR_NAME


@pytest.fixture(scope="module")
def check():
    return load_digit_check(CHECK_DIR, ThreadPoolExecutor(1))


def test_non_digits_are_seeded_framed_and_take_turns(mnist):
    lettering, _ = split_lettering()
    first, kinds = non_digits(mnist.train_images, 15, np.random.default_rng(3), lettering)
    again, _ = non_digits(mnist.train_images, 15, np.random.default_rng(3), lettering)
    assert first.shape == (15, 28, 28) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert kinds == list(KINDS) * 3
    assert all(image.max() >= 200 for image in first)  # framed: the strongest ink brought to 255


def test_the_glyphs_leave_out_what_reads_as_a_digit():
    assert not set("OoDQIlij!|()[]{}ZzSsbGBgq0123456789") & set(LETTERS + SYMBOLS)


def test_fonts_are_split_by_family_and_both_parts_have_some():
    families = fonts()
    training, measuring = split_fonts(families)
    assert training and measuring
    if len(families) > 1:
        names = {id(font): name for name, group in families.items() for font in group}
        assert not {names[id(f)] for f in training} & {names[id(f)] for f in measuring}
    only = {"Aileron": families[next(iter(families))]}
    assert split_fonts(only) == (only["Aileron"], only["Aileron"])  # a bare container


def test_hand_drawn_shapes_are_split_and_both_parts_have_some():
    training, measuring = split_shapes()
    assert len(training) >= 2 * len(measuring) - 1 and measuring
    assert not set(training) & set(measuring)
    assert set(split_lettering()[1].shapes) == set(measuring)


def test_calibration_flags_the_asked_share_of_held_out_digits():
    scores = np.linspace(0, 1, 1001)
    threshold = calibrate(scores, 0.01)
    assert threshold == pytest.approx(0.01)
    assert measure({"digits": scores, "letter": np.zeros(4)}, threshold) == {
        "digits": 0.01,
        "letter": 1.0,
    }


def test_the_manifest_refuses_a_threshold_outside_0_1(tmp_path):
    manifest = DigitCheckManifest.read(CHECK_DIR)
    manifest.write(tmp_path)
    assert DigitCheckManifest.read(tmp_path) == manifest
    with pytest.raises(ValueError, match="threshold"):
        DigitCheckManifest(**(manifest.model_dump() | {"threshold": 1.5}))


def test_the_committed_check_flags_few_test_digits(check, mnist):
    scores = check.scores_now(scale_pixels(mnist.test_images))
    assert scores.shape == (len(mnist.test_images),) and scores.dtype == np.float32
    assert np.mean(scores < check.threshold) <= 0.005  # the target, the whole split


def test_the_committed_check_flags_client_pictures_of_non_digits(check, mnist):
    """A seeded sample of what `benchmarks/not_a_digit.py` measures: letters and symbols in
    fonts the check never trained on, scribbles, several digits, as phones send them."""
    images, kinds = framed_non_digits(mnist.test_images, 120, seed=5)
    flagged = check.scores_now(scale_pixels(images)) < check.threshold
    by_kind = {k: float(np.mean(flagged[np.array(kinds) == k])) for k in set(kinds)}
    assert len(images) >= 110 and flagged.mean() >= 0.8, by_kind  # the benchmark: 86-87%


def test_a_damaged_check_is_refused_saying_what_to_do(tmp_path):
    damaged = tmp_path / CHECK_DIR_NAME
    shutil.copytree(CHECK_DIR, damaged)
    (damaged / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(DigitCheckUnavailable, match="sha256 does not match.*mnist-digit-check"):
        load_digit_check(damaged, ThreadPoolExecutor(1))
    (damaged / CHECK_MANIFEST).write_text("{", encoding="utf-8")
    with pytest.raises(DigitCheckUnavailable, match="cannot be read"):
        load_digit_check(damaged, ThreadPoolExecutor(1))
    with pytest.raises(DigitCheckUnavailable, match="no digit check in .*MNIST_DIGIT_CHECK=false"):
        load_digit_check(tmp_path / "absent", ThreadPoolExecutor(1))


def test_the_check_model_reads_28x28_and_scores_in_0_1():
    from training.digit_check import build_check

    model = build_check()
    scores = model.predict(np.zeros((3, 28, 28), np.float32), verbose=0)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_the_manifest_records_how_it_was_made_and_what_it_measured():
    manifest = DigitCheckManifest.read(CHECK_DIR)
    assert manifest.training["command"].startswith("mnist-digit-check ")
    # Every kind the generator draws, but the hand-drawn letters it gained after this check
    # was trained (the committed check was measured without them; the benchmark measures it).
    assert {"digits", "redrawn_digits", *KINDS} - {"hand_drawn"} <= set(manifest.measured)
    assert set(manifest.measured) <= {"digits", "redrawn_digits", *KINDS}
    assert manifest.calibration["flag_rate"] == manifest.training["flag_rate"]
