"""The shared preprocessing: MNIST-style framing of real-world digit pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from devtools.pictures.scene import Scene, compose
from mnist_shared.preprocessing import (
    WORK_SIDE,
    NoDigitFound,
    frame_digit,
    reduce_for_digit,
    scale_pixels,
    to_mnist_digit,
)


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


def _encoded(picture: Image.Image, fmt: str = "JPEG") -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, quality=90)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _ink_rows_cols(digit: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(digit.max(axis=1) > 64)
    cols = np.flatnonzero(digit.max(axis=0) > 64)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize(
    "picture",
    [
        Image.new("L", (50, 50), 255),  # white
        Image.new("RGB", (300, 200), (140, 150, 120)),  # a uniform photo
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),  # an empty transparent canvas
        Image.new("L", (28, 28), 0),  # a blank MNIST-sized image
    ],
    ids=["white", "uniform", "transparent", "28x28"],
)
def test_blank_picture_has_no_digit(picture):
    with pytest.raises(NoDigitFound, match="no digit found"):
        to_mnist_digit(picture)


def test_noisy_grey_photo_without_ink_has_no_digit():
    noise = np.random.default_rng(0).normal(150, 8, (400, 300))
    with pytest.raises(NoDigitFound):
        to_mnist_digit(_encoded(Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))))


def _photo(mnist, index, **scene):
    settings = {"canvas": (400, 300), "digit_height": 160, "noise": 5.0, **scene}
    rng = np.random.default_rng(index)
    return _encoded(compose(mnist.test_images[index], Scene(**settings), rng))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 digits blurred a little (1 = same picture; a pen's stroke
    and MNIST's differ in width and by a pixel here and there)."""
    soft = [
        np.asarray(Image.fromarray(d).filter(ImageFilter.GaussianBlur(1.5)), float) for d in (a, b)
    ]
    return float(np.corrcoef(soft[0].ravel(), soft[1].ravel())[0, 1])


@pytest.mark.parametrize(
    "scene",
    [
        {"paper": (150, 150, 150), "ink": (30, 30, 30)},  # grey paper
        {"paper": (240, 240, 240), "ink": (40, 40, 40), "shadow": 0.45},  # a shadow across
        {"paper": (220, 220, 220), "ink": (140, 140, 140)},  # faint pencil (80 levels)
        {"paper": (30, 40, 30), "ink": (220, 220, 220)},  # chalk: light on dark
        {"paper": (250, 235, 200), "ink": (40, 40, 150), "blur": 1.5},  # blue pen, cream paper
    ],
    ids=["grey", "shadow", "pencil", "chalk", "cream"],
)
def test_photos_look_like_the_mnist_digit_they_show(mnist, scene):
    for index in range(5):
        digit = to_mnist_digit(_photo(mnist, index, **scene))
        assert digit.max() == 255  # strokes stretched to full intensity
        assert max(_ink_rows_cols(digit)) in (19, 20, 21)  # fitted into 20x20
        assert digit[0].max() == 0 and digit[:, 0].max() == 0  # paper is black
        assert _agreement(digit, mnist.test_images[index]) > 0.8


def test_a_speck_of_dust_does_not_move_the_frame(mnist):
    clean = np.asarray(_photo(mnist, 3, paper=(200, 200, 200)).convert("L")).copy()
    dusty = clean.copy()
    dusty[10, 10] = 0  # one dark pixel far from the digit
    framed = [to_mnist_digit(_encoded(Image.fromarray(a), "PNG")) for a in (clean, dusty)]
    # Same frame; the paper fit moves by a hair.
    np.testing.assert_allclose(framed[0], framed[1], atol=2)


def test_large_jpeg_is_decoded_at_reduced_size(mnist):
    photo = compose(
        mnist.test_images[7],
        Scene(canvas=(4000, 3000), digit_height=1500, noise=4.0),
        np.random.default_rng(0),
    )
    reduced = reduce_for_digit(_encoded(photo))
    assert reduced.size == (WORK_SIDE, WORK_SIDE * 3 // 4)
    small = to_mnist_digit(_encoded(photo.resize((400, 300), Image.Resampling.BOX)))
    assert _agreement(to_mnist_digit(reduced), small) > 0.95


def test_frame_digit_fits_any_ink_map_into_20x20():
    ink = np.zeros((90, 60), np.float32)
    ink[10:80, 20:35] = 1.0
    digit = frame_digit(ink)
    assert digit.shape == (28, 28) and digit.max() == 255
    assert _ink_rows_cols(digit)[0] == 20
    with pytest.raises(NoDigitFound):
        frame_digit(np.zeros((40, 40), np.float32))
