"""Every error a client can cause is JSON `{"error": ...}` that says what to do."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


def test_unknown_path_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "no such path /nope: the API is listed at /docs."}


def test_wrong_method_is_json_405(client):
    response = client.get("/predict")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == {"error": "GET is not allowed on /predict; use POST."}


def test_pixels_as_0_to_1_floats_are_refused(client):
    response = client.post("/predict", json={"pixels": [[[0.5] * 28] * 28]})
    assert response.status_code == 400
    assert "looks like 0..1 floats: send 0..255" in response.json()["error"]


def test_multipart_part_with_another_name_is_named(client):
    files = [("image", ("a.png", b"x", "image/png")), ("picture", ("b.png", b"y", "image/png"))]
    response = client.post("/predict", files=files)
    assert response.status_code == 400
    assert response.json()["error"] == (
        "the request holds no image: no multipart part is named 'file' (the parts sent were "
        "'image', 'picture'). Send each image as a part named file (curl -F file=@digit.png)."
    )


def test_return_input_that_is_not_a_boolean_is_named(client):
    response = client.post("/predict", params={"return_input": "maybe"}, json={"pixels": []})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid request: query.return_input: 'maybe' is not a boolean; use true or false."
    }


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", b"--xx--\r\n", "no boundary in the Content-Type header"),
        (
            "multipart/form-data; boundary=xx",
            b"--xx\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--xx--\r\n",
            'a part has no Content-Disposition "name"',
        ),
        (
            "multipart/form-data; boundary=xx",
            b"--xx\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n\r\nabc",
            "it ends inside a part",
        ),
    ],
    ids=["no_boundary", "part_without_name", "truncated"],
)
def test_malformed_multipart_says_what_is_wrong(client, content_type, body, message):
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_too_many_multipart_parts_is_413(client):
    files = [("file", (f"{i}.png", b"x", "image/png")) for i in range(66)]
    response = client.post("/predict", files=files)
    assert response.status_code == 413
    assert "more than 65 multipart parts" in response.json()["error"]
