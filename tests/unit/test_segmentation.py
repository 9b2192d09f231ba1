"""Reading whole numbers (`mnist_shared.segmentation`): every digit found, in reading order,
framed as `/predict` frames one, on seeded client-like pictures of numbers; the separated-digit
targets of the numbers issue asserted on a sample (the full table: benchmarks/read_numbers.py)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw

from devtools.committed import committed_models
from devtools.pictures.numbers import sample_numbers
from mnist_shared.digit_check import CHECK_DIR_NAME
from mnist_shared.ink import NoDigitFound
from mnist_shared.manifest import latest_version
from mnist_shared.preprocessing import scale_pixels, to_mnist_digit
from mnist_shared.segmentation import Judge, read_number
from service.runtime.digit_check import load_digit_check


@pytest.fixture(scope="module")
def judge() -> Judge:
    """The committed digit check, as the service hands it to segmentation."""
    return load_digit_check(committed_models() / CHECK_DIR_NAME, ThreadPoolExecutor(1)).judge


@pytest.fixture(scope="module")
def read(mnist, judge):
    """A picture's number as the service reads it (the committed group model, touching digits
    told apart by the digit check; `judged=False`: by the width of marks alone)."""
    group = committed_models() / "group"
    session = ort.InferenceSession(str(group / str(latest_version(group)) / "model.onnx"))

    def reading(data: bytes, judged: bool = True) -> str:
        found = read_number(Image.open(io.BytesIO(data)), judge if judged else None)
        digits = np.stack([f.digit for f in found])
        probabilities = session.run(None, {"image": scale_pixels(digits)})[0]
        return "".join(str(d) for d in probabilities.argmax(1))

    return reading


def test_separated_four_digit_numbers_meet_the_targets(mnist, read):
    pictures = sample_numbers(mnist.test_images, mnist.test_labels, 60, seed=21)
    readings = [read(p.picture.data) for p in pictures]
    whole = np.mean([r == p.number for r, p in zip(readings, pictures, strict=True)])
    digits = [
        a == b
        for r, p in zip(readings, pictures, strict=True)
        for a, b in zip(r.ljust(len(p.number)), p.number, strict=False)
    ]
    assert np.mean(digits) >= 0.98, readings
    assert whole >= 0.95, [(p.number, r) for p, r in zip(pictures, readings, strict=True)]


def test_the_digit_check_cuts_touching_digits_apart(mnist, read):
    pictures = sample_numbers(
        mnist.test_images, mnist.test_labels, 40, seed=8, lengths=(2,), spacing="touching"
    )
    judged = np.mean([read(p.picture.data) == p.number for p in pictures])
    by_width = np.mean([read(p.picture.data, judged=False) == p.number for p in pictures])
    assert judged >= 0.85 and judged >= by_width + 0.1, (judged, by_width)


def test_numbers_of_every_length_are_read_in_order(mnist, read):
    pictures = sample_numbers(
        mnist.test_images, mnist.test_labels, 14, seed=3, lengths=(2, 3, 5, 6, 7, 8, 2)
    )
    right = [read(p.picture.data) == p.number for p in pictures]
    assert sum(right) >= 12, [(p.number, read(p.picture.data)) for p in pictures]


def test_one_digit_is_framed_exactly_as_predict_frames_it(mnist):
    picture = sample_numbers(mnist.test_images, mnist.test_labels, 1, seed=1, lengths=(1,))[0]
    image = Image.open(io.BytesIO(picture.picture.data))
    (found,) = read_number(image)
    np.testing.assert_array_equal(
        found.digit, to_mnist_digit(Image.open(io.BytesIO(picture.picture.data)))
    )


def test_lines_are_read_top_to_bottom_with_boxes_in_the_pictures_pixels(mnist):
    canvas = Image.new("L", (300, 260), 255)
    for row, digits in enumerate(((0, 1), (2, 3))):
        for column, index in enumerate(digits):
            digit = Image.fromarray(255 - mnist.test_images[index]).resize((84, 84))
            canvas.paste(digit, (30 + 120 * column, 20 + 120 * row))
    found = read_number(canvas)
    assert [f.line for f in found] == [0, 0, 1, 1]
    x, y, width, height = found[3].box  # the second line's second digit
    assert 150 <= x <= 270 and 140 <= y <= 260 and 0 < width <= 84 and 0 < height <= 84


def test_specks_and_a_rule_line_are_not_digits(mnist):
    canvas = Image.new("L", (400, 160), 255)
    draw = ImageDraw.Draw(canvas)
    draw.line([(0, 140), (399, 140)], fill=120, width=2)  # a rule line across the sheet
    for x in (20, 370):
        draw.ellipse([x, 20, x + 3, 23], fill=0)  # specks
    for column, index in enumerate((0, 1, 2)):
        canvas.paste(
            Image.fromarray(255 - mnist.test_images[index]).resize((84, 84)),
            (60 + 100 * column, 30),
        )
    assert len(read_number(canvas)) == 3


def test_a_blank_picture_has_no_digit():
    with pytest.raises(NoDigitFound):
        read_number(Image.new("L", (200, 100), 230))
