"""`POST /read` as a client sees it: the number in each picture, digit by digit with boxes, in
every body `/predict` takes; errors as `/predict` gives them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from devtools.pictures.numbers import sample_numbers


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


@pytest.fixture(scope="module")
def numbers(mnist):
    return sample_numbers(mnist.test_images, mnist.test_labels, 8, seed=4, lengths=(3, 4, 5, 6))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_photo_of_a_number_is_read_digit_by_digit(client, numbers):
    picture = numbers[1]
    response = client.post(
        "/read?variant=group",
        files=[("file", ("n." + picture.picture.extension, picture.picture.data,
                         picture.picture.media_type))],
    )  # fmt: skip
    assert response.status_code == 200
    body = response.json()
    assert (body["variant"], body["backend"], body["precision"]) == ("group", "onnx", "int8")
    (reading,) = body["readings"]
    assert reading["number"] == picture.number and reading["lines"] == [picture.number]
    digits = reading["digits"]
    assert "".join(str(d["digit"]) for d in digits) == picture.number
    lefts = [d["box"][0] for d in digits]
    assert lefts == sorted(lefts) and all(d["box"][2] > 0 and d["box"][3] > 0 for d in digits)
    assert reading["confidence"] == pytest.approx(np.prod([d["confidence"] for d in digits]))
    assert all(len(d["probabilities"]) == 10 and d["line"] == 0 for d in digits)


def test_several_pictures_and_every_variant(client, numbers):
    files = [
        ("file", (f"{i}.jpg", p.picture.data, p.picture.media_type)) for i, p in enumerate(numbers)
    ]
    body = client.post("/read?variant=all&return_input=true", files=files).json()
    assert set(body["results"]) == {"group", "instance", "layer"}
    readings = body["results"]["layer"]["readings"]
    right = sum(r["number"] == p.number for r, p in zip(readings, numbers, strict=True))
    assert right >= len(numbers) - 1
    seen = Image.open(io.BytesIO(base64.b64decode(readings[0]["digits"][0]["input"])))
    assert seen.size == (28, 28)


def test_a_picture_without_a_digit_keeps_its_place(client, numbers):
    blank = _png(np.full((60, 200), 255, np.uint8))
    files = [("file", ("blank.png", blank, "image/png")),
             ("file", ("n.jpg", numbers[0].picture.data, "image/jpeg"))]  # fmt: skip
    readings = client.post("/read", files=files).json()["readings"]
    assert readings[0] == {
        "error": "file[0] (blank.png): no digit found: the picture has no ink that stands out "
        "from its background. Send a picture of a handwritten number, dark on light or light "
        "on dark."
    }
    assert readings[1]["number"] == numbers[0].number


def test_nothing_to_read_is_422(client):
    response = client.post(
        "/read",
        content=_png(np.full((60, 200), 255, np.uint8)),
        headers={"content-type": "image/png"},
    )
    assert response.status_code == 422 and "no digit" in response.json()["error"]


def test_mnist_ready_pixels_are_one_digit_each(client, mnist):
    response = client.post("/read", json={"pixels": mnist.test_images[:2].tolist()})
    readings = response.json()["readings"]
    assert [r["number"] for r in readings] == [str(d) for d in mnist.test_labels[:2]]
    assert readings[0]["digits"][0]["box"] == [0, 0, 28, 28]


def test_bad_requests_answer_as_predict_does(client, numbers):
    response = client.post(
        "/read?variant=nope", files=[("file", ("n.jpg", numbers[0].picture.data, "image/jpeg"))]
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "unknown variant 'nope': choose one of group, instance, layer, all."
    }


def test_the_open_inference_protocol_reads_numbers_when_asked_for_their_outputs(client, numbers):
    pictures = numbers[:2]
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [2],
              "data": [base64.b64encode(p.picture.data).decode() for p in pictures]}  # fmt: skip
    outputs = [{"name": name} for name in ("digit", "boxes", "picture", "line")]
    response = client.post("/v2/models/group/infer", json={"inputs": [tensor], "outputs": outputs})
    assert response.status_code == 200
    got = {o["name"]: o for o in response.json()["outputs"]}
    count = sum(len(p.number) for p in pictures)
    assert got["boxes"]["shape"] == [count, 4] and got["digit"]["shape"] == [count]
    assert got["picture"]["data"] == [i for i, p in enumerate(pictures) for _ in p.number]
    digits = "".join(str(d) for d in got["digit"]["data"])
    assert digits == "".join(p.number for p in pictures)
    assert set(got["line"]["data"]) == {0}
