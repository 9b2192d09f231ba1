"""Every error a client can cause is JSON `{"error": ...}` that says what to do."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(models_dir=REPO_ROOT / "models"))) as test_client:
        while test_client.get("/health/ready").status_code != 200:
            time.sleep(0.05)
        yield test_client


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
