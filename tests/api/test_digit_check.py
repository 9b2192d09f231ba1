"""\"Not a digit\" as a client sees it: `/predict` and `/read` say whether each picture looks
like one digit, `strict=true` refuses what does not, `/models` shows the check, and a server
without the check answers without it and says why `strict` cannot be honoured."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from devtools import REPO_ROOT

LETTER_FONT = ImageFont.load_default(150)


def _photo_of(text: str) -> bytes:
    """A JPEG of dark ink on grey paper, as a phone sends it."""
    picture = Image.new("L", (300, 260), 205)
    ImageDraw.Draw(picture).text((150, 130), text, 30, font=LETTER_FONT, anchor="mm")
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _files(*pictures: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(pictures)]


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


PHOTO_OF_3 = (REPO_ROOT / "examples/photo-3.jpg").read_bytes()


def test_a_letter_is_flagged_and_a_digit_is_not(client, threshold):
    response = client.post("/predict", files=_files(_photo_of("A"), PHOTO_OF_3))
    assert response.status_code == 200
    letter, three = response.json()["predictions"]
    assert letter["looks_like_digit"] is False and letter["digit_score"] < threshold
    assert 0 <= letter["digit"] <= 9  # the model's guess is still there, flagged
    assert three["looks_like_digit"] is True and three["digit_score"] >= threshold
    assert three["digit"] == 3


def test_strict_gives_a_non_digit_an_error_entry_in_its_place(client):
    response = client.post("/predict?strict=true", files=_files(PHOTO_OF_3, _photo_of("#")))
    assert response.status_code == 200
    three, symbol = response.json()["predictions"]
    assert three["digit"] == 3 and three["looks_like_digit"] is True
    assert symbol == {
        "error": "this does not look like one digit (strict=true): send a picture of one "
        "handwritten digit (POST /read reads a picture of a whole number)"
    }


def test_strict_with_nothing_that_looks_like_a_digit_is_422(client, threshold):
    response = client.post("/predict?strict=true", files=_files(_photo_of("A"), _photo_of("%")))
    assert response.status_code == 422
    assert response.json() == {
        "error": "2 of 2 pictures do not look like one handwritten digit (digit check score "
        f"below {threshold:.3g}, or several digits side by side): send a picture of a single "
        "digit (POST /read reads a whole number), or leave out strict=true to have every "
        "picture read anyway"
    }


def test_strict_must_be_a_boolean(client):
    response = client.post("/predict?strict=maybe", files=_files(PHOTO_OF_3))
    assert response.status_code == 400
    assert "query.strict: 'maybe' is not a boolean" in response.json()["error"]


def test_every_variant_gets_the_same_verdict(client):
    body = client.post("/predict?variant=all", files=_files(_photo_of("A"), PHOTO_OF_3)).json()
    verdicts = {
        name: [p["looks_like_digit"] for p in result["predictions"]]
        for name, result in body["results"].items()
    }
    assert verdicts == {name: [False, True] for name in ("group", "instance", "layer")}


def test_strict_leaves_a_non_digit_out_of_every_variants_answer(client):
    files = _files(_photo_of("A"), PHOTO_OF_3, _photo_of("#"), PHOTO_OF_3)
    response = client.post("/predict?variant=all&strict=true", files=files)
    assert response.status_code == 200
    for result in response.json()["results"].values():
        letter, three, symbol, again = result["predictions"]
        assert letter["error"] == symbol["error"]
        assert "does not look like one digit" in letter["error"]
        assert three["digit"] == again["digit"] == 3
        assert three["looks_like_digit"] is again["looks_like_digit"] is True


NUMBER_2024 = (REPO_ROOT / "examples/number-2024.jpg").read_bytes()


def test_read_says_it_of_each_digit_and_of_the_reading(client):
    (reading,) = client.post("/read", files=_files(NUMBER_2024)).json()["readings"]
    assert reading["number"] == "2024" and reading["looks_like_number"] is True
    assert [d["looks_like_digit"] for d in reading["digits"]] == [True] * 4
    assert all(0 <= d["digit_score"] <= 1 for d in reading["digits"])


def test_a_number_sent_to_predict_is_flagged_saying_how_many_digits_it_holds(client):
    (prediction,) = client.post("/predict", files=_files(NUMBER_2024)).json()["predictions"]
    assert prediction["digits_in_picture"] == 4 and prediction["looks_like_digit"] is False
    (three,) = client.post("/predict", files=_files(PHOTO_OF_3)).json()["predictions"]
    assert "digits_in_picture" not in three and three["looks_like_digit"] is True
    response = client.post("/predict?strict=true", files=_files(PHOTO_OF_3, NUMBER_2024))
    assert response.status_code == 200
    assert response.json()["predictions"][1] == {
        "error": "this does not look like one digit (strict=true): send a picture of one "
        "handwritten digit (POST /read reads a picture of a whole number)"
    }


def test_strict_read_refuses_a_picture_holding_a_letter_and_reads_the_others(client):
    response = client.post("/read?strict=true", files=_files(_photo_of("K"), NUMBER_2024))
    assert response.status_code == 200
    letter, number = response.json()["readings"]
    assert letter == {
        "error": "this holds something that does not look like a digit, such as a letter or a "
        "symbol (strict=true): send a picture of a handwritten number"
    }
    assert number["number"] == "2024" and number["looks_like_number"] is True
    (flagged,) = client.post("/read", files=_files(_photo_of("K"))).json()["readings"]
    assert flagged["looks_like_number"] is False


def test_strict_read_with_nothing_like_a_number_is_422(client):
    response = client.post("/read?strict=true", files=_files(_photo_of("K"), _photo_of("#")))
    assert response.status_code == 422
    assert response.json() == {
        "error": "2 of 2 pictures hold something that does not look like a digit (a letter, a "
        "symbol; the digit check): send pictures of handwritten numbers, or leave out "
        "strict=true to have every picture read anyway"
    }


def test_models_shows_the_check(client):
    check = client.get("/models").json()["digit_check"]
    assert check["version"] >= 1 and 0 < check["threshold"] < 1
    assert check["flagged_when_measured"]["digits"] <= 0.01


def test_without_the_check_answers_leave_it_out_and_strict_says_why(app_client):
    client = app_client(digit_check=False, model_poll_s=0)
    (prediction,) = client.post("/predict", files=_files(PHOTO_OF_3)).json()["predictions"]
    assert "looks_like_digit" not in prediction and prediction["digit"] == 3
    response = client.post("/predict?strict=true", files=_files(PHOTO_OF_3))
    assert response.status_code == 400
    assert response.json() == {
        "error": "strict=true needs the digit check, which this server has not loaded "
        "(MNIST_DIGIT_CHECK=false); leave out strict"
    }
    assert client.get("/models").json()["digit_check"] == {"error": "MNIST_DIGIT_CHECK=false"}
    body = {
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28],
                    "data": np.zeros(784).tolist()}],
        "outputs": [{"name": "looks_like_digit"}],
    }  # fmt: skip
    response = client.post("/v2/models/group/infer", json=body)
    assert response.status_code == 400
    assert "output 'looks_like_digit' needs the digit check" in response.json()["error"]
