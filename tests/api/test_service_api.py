"""The HTTP API against the committed models: predictions, every input form, every bad input."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import zlib

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from devtools.committed import committed_models
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

MODELS_DIR = committed_models()


def png_bytes(array: np.ndarray, mode: str = "L", fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(app_client):
    return app_client(models_dir=MODELS_DIR, max_upload_bytes=512 * 1024, max_images_per_request=16)


def _post_png(client, image, **params):
    return client.post(
        "/predict", params=params, content=png_bytes(image), headers={"content-type": "image/png"}
    )


def test_accuracy_on_300_real_test_images_sent_as_png(client, mnist):
    for variant in ("group", "instance", "layer"):
        correct = 0
        for start in range(0, 300, 10):
            files = [
                ("file", (f"{i}.png", png_bytes(mnist.test_images[i]), "image/png"))
                for i in range(start, start + 10)
            ]
            response = client.post("/predict", params={"variant": variant}, files=files)
            assert response.status_code == 200, response.text
            digits = [p["digit"] for p in response.json()["predictions"]]
            correct += int((np.array(digits) == mnist.test_labels[start : start + 10]).sum())
        assert correct / 300 >= 0.98, (variant, correct)


def test_response_shape(client, mnist):
    response = _post_png(client, mnist.test_images[0], variant="layer")
    assert response.status_code == 200
    body = response.json()
    assert body["variant"] == "layer" and body["backend"] == "onnx"
    assert isinstance(body["model_version"], int) and body["model_version"] >= 1
    (prediction,) = body["predictions"]
    assert prediction["digit"] == int(mnist.test_labels[0])
    assert len(prediction["probabilities"]) == 10
    assert prediction["confidence"] == max(prediction["probabilities"])
    assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-4)


def test_each_variant_answers_with_its_own_model(client, mnist):
    body = client.post(
        "/predict",
        params={"variant": "all"},
        content=png_bytes(mnist.test_images[3]),
        headers={"content-type": "image/png"},
    ).json()
    assert body["variant"] == "all" and set(body["results"]) == {"group", "instance", "layer"}
    probabilities = {
        v: tuple(r["predictions"][0]["probabilities"]) for v, r in body["results"].items()
    }
    assert len(set(probabilities.values())) == 3  # three different models
    for variant, expected in probabilities.items():
        alone = _post_png(client, mnist.test_images[3], variant=variant).json()
        assert alone["variant"] == variant
        assert tuple(alone["predictions"][0]["probabilities"]) == pytest.approx(expected, abs=1e-6)


def test_default_variant_is_group(client, mnist):
    assert _post_png(client, mnist.test_images[0]).json()["variant"] == "group"


def test_every_input_form_gives_the_same_answer(client, mnist):
    image = mnist.test_images[7]
    expected = _post_png(client, image).json()["predictions"][0]["probabilities"]
    forms = {
        "multipart": dict(files=[("file", ("d.png", png_bytes(image), "image/png"))]),
        "raw_bmp": dict(content=png_bytes(image, fmt="BMP"), headers={"content-type": "image/bmp"}),
        "raw_webp_lossless": dict(content=_webp(image), headers={"content-type": "image/webp"}),
        "raw_gif": dict(
            content=png_bytes(image, mode="P", fmt="GIF"), headers={"content-type": "image/gif"}
        ),
        "json_images": dict(
            json={"images": [base64.b64encode(png_bytes(image, mode="RGBA")).decode()]}
        ),
        "json_pixels": dict(json={"pixels": [image.tolist()]}),
    }
    for name, kwargs in forms.items():
        response = client.post("/predict", **kwargs)
        assert response.status_code == 200, (name, response.text)
        got = response.json()["predictions"][0]["probabilities"]
        assert got == pytest.approx(expected, abs=1e-6), name
    jpeg = client.post(
        "/predict",
        content=png_bytes(image, mode="RGB", fmt="JPEG"),
        headers={"content-type": "image/jpeg"},
    )
    assert jpeg.json()["predictions"][0]["digit"] == int(mnist.test_labels[7])


def _webp(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


def test_predictions_in_input_order(client, mnist):
    files = [("file", (f"{i}.png", png_bytes(mnist.test_images[i]), "image/png")) for i in range(8)]
    digits = [p["digit"] for p in client.post("/predict", files=files).json()["predictions"]]
    assert digits == mnist.test_labels[:8].tolist()


def _bomb_png(width=30000, height=30000) -> bytes:
    """A tiny file whose header declares 900 M pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        )

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        (dict(content=b"", headers={"content-type": "image/png"}), 400, "image is empty"),
        (
            dict(content=b"definitely not an image", headers={"content-type": "image/png"}),
            400,
            "is not a readable image",
        ),
        (
            dict(
                content=png_bytes(
                    np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
                )[:2000],
                headers={"content-type": "image/png"},
            ),
            400,
            "could not be decoded",
        ),
        (
            dict(
                content=png_bytes(np.zeros((1, 1), np.uint8)), headers={"content-type": "image/png"}
            ),
            400,
            "is 1x1 pixels, too small",
        ),
        (
            dict(content=b"\0" * (600 * 1024), headers={"content-type": "image/png"}),
            413,
            "over the limit of 524288 bytes",
        ),
        (
            dict(content=_bomb_png(), headers={"content-type": "image/png"}),
            413,
            "too large to decode",
        ),
        (
            dict(content=_bomb_png(5000, 5000), headers={"content-type": "image/png"}),
            413,
            "declares 5000x5000 pixels, more than the limit of 16000000",
        ),
        (
            dict(json={"pixels": [[[0] * 28] * 28] * 17}),
            413,
            "holds 17 images, more than the limit of 16",
        ),
        (
            dict(json={"pixels": [[[0] * 27] * 28]}),
            400,
            "has shape [1, 28, 27]; expected [N, 28, 28]",
        ),
        (
            dict(
                content=json.dumps({"pixels": [[[float("nan")] * 28] * 28]}),
                headers={"content-type": "application/json"},
            ),
            400,
            "NaN and Infinity are not JSON",
        ),
        (dict(json={"pixels": [[[300] * 28] * 28]}), 400, "values must lie in 0..255"),
        (dict(json={"pixels": [[[-1] * 28] * 28]}), 400, "values must lie in 0..255"),
        (dict(json={"pixels": [[["a"] * 28] * 28]}), 400, "must hold only numbers"),
        (dict(json={"pixels": []}), 400, "holds no image"),
        (dict(json={"images": ["%%%"]}), 400, "images[0] is not valid base64"),
        (dict(json={"images": [1]}), 400, "must be a list of base64 strings"),
        (dict(json={"something": 1}), 400, 'exactly one of "images"'),
        (
            dict(content=b"{not json", headers={"content-type": "application/json"}),
            400,
            "malformed JSON body",
        ),
        (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty JSON body"),
        (
            dict(content=b"hello", headers={"content-type": "text/plain"}),
            415,
            "unsupported content type 'text/plain'",
        ),
        (dict(content=b"hello"), 415, "unsupported content type"),
        (dict(files=[("other", ("a.png", b"x", "image/png"))]), 400, "holds no image"),
        (
            dict(data={"file": "text"}, files=[("x", ("a", b"", "a/b"))]),
            400,
            "must be a file upload",
        ),
        (
            dict(
                content=b"--xx\r\nbroken",
                headers={"content-type": "multipart/form-data; boundary=xx"},
            ),
            400,
            "",
        ),
    ],
    ids=[
        "empty_body",
        "not_an_image",
        "truncated_png",
        "one_pixel",
        "too_large",
        "decompression_bomb",
        "over_pixel_limit",
        "too_many_images",
        "pixels_wrong_shape",
        "pixels_nan",
        "pixels_over_255",
        "pixels_negative",
        "pixels_not_numbers",
        "pixels_empty",
        "bad_base64",
        "images_not_strings",
        "json_wrong_keys",
        "malformed_json",
        "empty_json",
        "text_plain",
        "no_content_type",
        "multipart_no_file",
        "multipart_text_field",
        "multipart_malformed",
    ],
)
def test_bad_input_gets_a_clear_4xx(client, kwargs, status, message):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert client.get("/health/ready").status_code == 200  # the service stays up


def test_zero_pixel_image(client):
    # PIL cannot write a 0x0 PNG; craft the header by hand.
    response = client.post(
        "/predict", content=_bomb_png(0, 0), headers={"content-type": "image/png"}
    )
    assert response.status_code == 400
    assert "readable image" in response.json()["error"] or "too small" in response.json()["error"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"variant": "batch"},
            "unknown variant 'batch': choose one of group, instance, layer, all.",
        ),
        ({"backend": "torch"}, "unknown backend 'torch': choose one of onnx, savedmodel."),
    ],
)
def test_unknown_variant_or_backend_lists_valid_ones(client, mnist, params, message):
    response = _post_png(client, mnist.test_images[0], **params)
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_savedmodel_backend(client, mnist):
    onnx = _post_png(client, mnist.test_images[1], variant="instance").json()
    saved = _post_png(client, mnist.test_images[1], variant="instance", backend="savedmodel")
    assert saved.status_code == 200, saved.text
    assert saved.json()["backend"] == "savedmodel"
    assert saved.json()["predictions"][0]["probabilities"] == pytest.approx(
        onnx["predictions"][0]["probabilities"], abs=1e-5
    )


def test_savedmodel_without_tensorflow_is_501(client, mnist, monkeypatch):
    import service.runtime.backends

    monkeypatch.setattr(service.runtime.backends, "tensorflow_available", lambda: False)
    response = _post_png(client, mnist.test_images[1], variant="layer", backend="savedmodel")
    assert response.status_code == 501
    assert (
        "needs TensorFlow" in response.json()["error"]
        and "backend=onnx" in response.json()["error"]
    )


def test_models_endpoint(client):
    models = {m["variant"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == {"group", "instance", "layer"}
    for entry in models.values():
        assert entry["loaded"] and not entry["unloaded"]
        assert {"version": entry["served_version"], "state": "serving"} in entry["versions"]
        assert "onnx" in entry["backends"]
        assert entry["input"]["shape"] == [None, 28, 28]
        assert 0.98 <= entry["test_accuracy"] <= 1.0


def test_metrics_count_requests(client, mnist):
    def count(text, variant, status):
        needle = f'mnist_requests_total{{status="{status}",variant="{variant}"}} '
        lines = [line for line in text.splitlines() if line.startswith(needle)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = client.get("/metrics").text
    _post_png(client, mnist.test_images[0], variant="layer")
    client.post(
        "/predict",
        params={"variant": "layer"},
        content=b"junk",
        headers={"content-type": "image/png"},
    )
    after = client.get("/metrics").text
    assert count(after, "layer", "200") == count(before, "layer", "200") + 1
    assert count(after, "layer", "400") == count(before, "layer", "400") + 1
    for name in (
        "mnist_request_latency_seconds_bucket",
        "mnist_batch_size_bucket",
        "mnist_queue_depth",
    ):
        assert name in after


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "application/json"} <= set(body)


def test_readiness_before_and_after_loading():
    settings = Settings(models_dir=MODELS_DIR)
    with TestClient(create_app(settings, load_models=False)) as idle:
        response = idle.get("/health/ready")
        assert response.status_code == 503 and response.json()["ready"] is False
        assert idle.get("/health/live").json() == {"status": "alive"}
    with TestClient(create_app(settings)) as loaded:
        wait_ready(loaded)
        assert loaded.get("/health/ready").json()["loaded"].keys() == {"group", "instance", "layer"}


def test_never_ready_without_models(tmp_path):
    with TestClient(create_app(Settings(models_dir=tmp_path))) as empty:
        import time

        time.sleep(0.5)
        state = empty.get("/health/ready")
        assert state.status_code == 503
        assert "no model version" in state.json()["errors"]["models"]
        response = empty.post("/predict", json={"pixels": [[[0] * 28] * 28]})
        assert response.status_code == 503 and "no model version" in response.json()["error"]


def test_corrupted_model_is_not_ready(tmp_path):
    import shutil

    for variant in ("group", "instance", "layer"):
        shutil.copytree(MODELS_DIR / variant, tmp_path / variant)
    onnx_file = next((tmp_path / "layer").glob("*/model.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10] + b"0123456789")
    with TestClient(create_app(Settings(models_dir=tmp_path))) as broken:
        import time

        time.sleep(2)
        state = broken.get("/health/ready").json()
        assert state["ready"] is False and "does not match the manifest" in state["errors"]["layer"]
        assert (
            broken.post(
                "/predict", params={"variant": "group"}, json={"pixels": [[[255] * 28] * 28]}
            ).status_code
            == 200
        )


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("max_batch_size", [1, 64])
def test_concurrent_requests_match_unbatched_inference(mnist, max_batch_size, precision):
    import onnxruntime as ort

    from mnist_shared.manifest import Manifest, latest_version
    from mnist_shared.preprocessing import scale_pixels

    version_dir = MODELS_DIR / "group" / str(latest_version(MODELS_DIR / "group"))
    model_file = Manifest.read(version_dir).precision_files()[precision]
    session = ort.InferenceSession(str(version_dir / model_file))
    images = mnist.test_images[:48]
    expected = np.concatenate(
        [session.run(None, {"image": scale_pixels(images[i : i + 1])})[0] for i in range(48)]
    )
    settings = Settings(
        models_dir=MODELS_DIR,
        variants=["group"],
        max_batch_size=max_batch_size,
        max_batch_wait_ms=5,
    )
    app = create_app(settings)

    async def run() -> list[dict]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                while (await http.get("/health/ready")).status_code != 200:
                    await asyncio.sleep(0.05)
                responses = await asyncio.gather(
                    *(
                        http.post(
                            "/predict",
                            params={"precision": precision},
                            json={"pixels": [images[i].tolist()]},
                        )
                        for i in range(48)
                    )
                )
                metrics = (await http.get("/metrics")).text
        return [r.json() for r in responses], metrics

    bodies, metrics = asyncio.run(run())
    got = np.array([b["predictions"][0]["probabilities"] for b in bodies])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert {b["precision"] for b in bodies} == {precision}
    batches = [
        line
        for line in metrics.splitlines()
        if line.startswith(
            f'mnist_batch_size_count{{backend="onnx",precision="{precision}",variant="group"}}'
        )
    ]
    n_batches = float(batches[0].split()[-1])
    if max_batch_size == 1:
        assert n_batches == 48
    else:
        assert n_batches < 48  # requests were merged


def test_photo_like_inputs_are_framed_like_mnist(client, mnist):
    """Dark ink on light paper, 5x larger, off-centre, as RGB JPEG: still recognized."""
    correct = 0
    for i in range(50):
        digit = 255 - np.asarray(Image.fromarray(mnist.test_images[i]).resize((140, 140)))
        canvas = np.full((200, 180), 255, np.uint8)
        canvas[10:150, 30:170] = digit  # off-centre on a larger sheet
        response = client.post(
            "/predict",
            content=png_bytes(canvas, mode="RGB", fmt="JPEG"),
            headers={"content-type": "image/jpeg"},
        )
        correct += response.json()["predictions"][0]["digit"] == mnist.test_labels[i]
    assert correct >= 47, correct


def test_png_round_trip_gives_identical_predictions(client, mnist):
    """200 real test digits: PNG upload vs the raw arrays as `pixels`, same probabilities."""
    images = mnist.test_images[300:500]
    for start in range(0, 200, 10):  # the fixture allows 16 images per request
        chunk = images[start : start + 10]
        files = [
            ("file", (f"{i}.png", png_bytes(image), "image/png")) for i, image in enumerate(chunk)
        ]
        via_png = client.post("/predict", params={"variant": "instance"}, files=files).json()
        via_pixels = client.post(
            "/predict", params={"variant": "instance"}, json={"pixels": chunk.tolist()}
        ).json()
        assert via_png["predictions"] == via_pixels["predictions"]
