"""The shared preprocessing: MNIST-style framing of real-world digit pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_shared.preprocessing import scale_pixels, to_mnist_digit


def _png_round_trip(array: np.ndarray, mode: str = "L") -> Image.Image:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, "PNG")
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_scale_pixels():
    out = scale_pixels(np.array([0, 51, 255], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0])


def test_mnist_digits_pass_through_unchanged(mnist):
    for image in mnist.test_images[:500]:
        np.testing.assert_array_equal(to_mnist_digit(_png_round_trip(image)), image)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_mnist_digits_in_other_modes(mnist, mode):
    image = mnist.test_images[0]
    np.testing.assert_array_equal(to_mnist_digit(_png_round_trip(image, mode)), image)


def _canvas_digit(size=(200, 300), ink=(20, 20, 20), paper=(250, 250, 245), box=(40, 60, 110, 240)):
    canvas = Image.new("RGB", size, paper)
    ImageDraw.Draw(canvas).rectangle(box, fill=ink)
    return canvas


def test_dark_ink_on_light_paper_is_inverted_cropped_and_centred():
    digit = to_mnist_digit(_canvas_digit())
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows = np.flatnonzero(digit.max(axis=1) > 32)
    cols = np.flatnonzero(digit.max(axis=0) > 32)
    assert rows[-1] - rows[0] + 1 == 20  # the taller side scaled to 20 pixels
    assert cols[-1] - cols[0] + 1 < 20  # aspect ratio kept
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # black border: white ink on black
    mass = digit.astype(float)
    centre = (mass.sum(1) @ np.arange(28) / mass.sum(), mass.sum(0) @ np.arange(28) / mass.sum())
    assert abs(centre[0] - 13.5) <= 1 and abs(centre[1] - 13.5) <= 1


def test_transparent_canvas_alpha_is_the_ink():
    canvas = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).ellipse((30, 10, 70, 90), outline=(0, 0, 0, 255), width=8)
    digit = to_mnist_digit(canvas)
    assert digit.max() > 200  # the black strokes became white ink
    assert digit[0].max() == 0


def test_blank_image_gives_blank_digit():
    assert to_mnist_digit(Image.new("L", (50, 50), 255)).max() == 0
