"""Pictures as phones and scanners deliver them: every encoding, the EXIF orientation, header
limits on every format, and a request whose pictures are not all readable."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from devtools.committed import committed_models
from devtools.pictures.encodings import ENCODING_KINDS
from devtools.pictures.kinds import sample
from mnist_shared.preprocessing import reduce_for_digit, to_mnist_digit
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

ENCODINGS = [*ENCODING_KINDS, "exif_rotated"]


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


def _post(client, data: bytes, media_type: str, **params):
    return client.post(
        "/predict", params=params, content=data, headers={"content-type": media_type}
    )


@pytest.mark.parametrize("kind", ENCODINGS)
def test_every_encoding_is_read(client, mnist, kind):
    pictures = sample(kind, mnist.test_images, mnist.test_labels, 10, seed=11)
    digits = []
    for picture, _ in pictures:
        response = _post(client, picture.data, picture.media_type)
        assert response.status_code == 200, (kind, response.text)
        digits.append(response.json()["predictions"][0]["digit"])
    assert np.mean(np.array(digits) == [label for _, label in pictures]) >= 0.9, kind


def test_the_exif_orientation_is_applied(mnist):
    upright = Image.fromarray(255 - np.kron(mnist.test_images[0], np.ones((10, 10), np.uint8)))
    expected = to_mnist_digit(upright.copy())
    for tag, stored_as in [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90)]:
        exif = Image.Exif()
        exif[0x0112] = tag
        buffer = io.BytesIO()
        upright.transpose(stored_as).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
        seen = to_mnist_digit(Image.open(io.BytesIO(buffer.getvalue())))
        assert np.abs(seen.astype(int) - expected).mean() < 12, tag


def test_a_large_jpeg_is_still_decoded_at_reduced_size_with_its_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), "white").save(buffer, "JPEG", exif=exif.tobytes())
    image = Image.open(io.BytesIO(buffer.getvalue()))
    reduced = reduce_for_digit(image)
    assert image.mode == "L" and max(reduced.size) <= 320  # only the luma is decoded
    assert reduced.size[1] > reduced.size[0]  # turned upright: now portrait
    assert image.decoderconfig or image.size != (3000, 2000)  # JPEG draft mode was used


def test_a_multi_page_tiff_is_read_from_its_first_page(client, mnist):
    photo = Image.fromarray(255 - np.kron(mnist.test_images[0], np.ones((8, 8), np.uint8)))
    buffer = io.BytesIO()
    blank = Image.new("L", photo.size, 255)
    photo.save(buffer, "TIFF", save_all=True, append_images=[blank, blank])
    response = _post(client, buffer.getvalue(), "image/tiff")
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["digit"] == mnist.test_labels[0]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_large_webp_is_read_upright_through_opencv(client, mnist, mode):
    """Pillow cannot decode WebP at reduced size (and holds the GIL throughout): large ones go
    through OpenCV, their EXIF orientation still applied."""
    digit = 255 - np.kron(mnist.test_images[0], np.ones((60, 60), np.uint8))  # 1680x1680
    photo = Image.fromarray(digit).convert(mode).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: turn it back
    buffer = io.BytesIO()
    photo.save(buffer, "WEBP", quality=90, exif=exif.tobytes())
    response = _post(client, buffer.getvalue(), "image/webp")
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["digit"] == mnist.test_labels[0]


def _tiff_declaring(width: int, height: int) -> bytes:
    """A tiny TIFF whose header declares `width` x `height` pixels (a decompression bomb)."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8),  # StripOffsets
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"


def test_a_tiff_bomb_is_refused_before_decoding(client):
    response = _post(client, _tiff_declaring(5_000, 5_000), "image/tiff")
    assert response.status_code == 413, response.text
    assert "declares 5000x5000 pixels" in response.json()["error"]


def test_a_heic_over_the_pixel_limit_is_refused_before_decoding(mnist):
    settings = Settings(models_dir=committed_models(), max_image_pixels=10_000)
    picture, _ = sample("heic", mnist.test_images, mnist.test_labels, 1, seed=3)[0]
    with TestClient(create_app(settings)) as small:
        wait_ready(small)
        response = _post(small, picture.data, "image/heic")
    assert response.status_code == 413, response.text
    assert "more than the limit of 10000" in response.json()["error"]


def test_an_unknown_format_names_the_formats_that_work(client):
    response = _post(client, b"%PDF-1.7 not a picture", "application/octet-stream")
    assert response.status_code == 400
    assert "PNG, JPEG, WebP, HEIC, AVIF, TIFF, BMP or GIF" in response.json()["error"]


def test_a_picture_without_a_digit_keeps_the_others_answers(client, mnist):
    digit, _ = sample("grey_photo", mnist.test_images, mnist.test_labels, 1, seed=4)[0]
    blank = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 200, 190)).save(blank, "PNG")
    files = [
        ("file", ("blank.png", blank.getvalue(), "image/png")),
        ("file", (f"digit.{digit.extension}", digit.data, digit.media_type)),
    ]
    response = client.post("/predict", params={"variant": "all"}, files=files)
    assert response.status_code == 200, response.text
    for answer in response.json()["results"].values():
        failed, read = answer["predictions"]
        assert set(failed) == {"error"}
        assert failed["error"].startswith("file[0] (blank.png): no digit found")
        assert set(read) >= {"digit", "confidence", "probabilities"}
    only_blank = client.post("/predict", files=files[:1])
    assert only_blank.status_code == 422
    assert only_blank.json()["error"].startswith("file[0] (blank.png): no digit found")


def test_the_upload_limit_fits_a_phone_photo():
    assert Settings().max_upload_bytes >= 12 * 1024 * 1024


def test_every_encoding_is_a_kind_of_the_accuracy_table():
    from devtools.pictures.kinds import KINDS

    assert set(ENCODINGS) <= set(KINDS)


def test_real_handwriting_cropped_tight_is_read(client):
    """scikit-learn's UCI digits (43 other writers), ink touching the edges: 1% were read
    before the tight-crop reading (296 of 300 refused), 93% after (the target of 97% is not
    met yet: the same pictures with an 8 px margin read 95-96%)."""
    from benchmarks import realworld_accuracy as benchmark

    pictures, truth = benchmark.uci_pictures(200, seed=3)
    answers = benchmark.post_pictures(client, pictures)
    for variant in ("group", "instance", "layer"):
        assert np.mean(benchmark.digits_read(answers, variant) == truth) >= 0.9, variant
