"""The work a request can cause is bounded by its size and its deadline (issue 34): `/read`
refuses pictures of thousands of marks and digits past the request's budget, a TIFF of a
million tiles is refused before Pillow opens it, a reading stops at the deadline, readings
take turns with each other and never hold up `/predict`'s decoding, and every route checks its
query parameters the same way."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
from PIL import Image

from devtools.pictures.hostile import dot_grid, strip_bomb_tiff, tile_bomb_tiff, zigzag_stroke
from devtools.pictures.numbers import sample_numbers
from service.dataplane import decode_work, decoding
from service.dataplane.decoding import Limits
from service.runtime.digit_check import DigitCheck


@pytest.fixture(scope="module")
def client(app_client):
    return app_client()


@pytest.fixture(scope="module")
def numbers(mnist) -> list[bytes]:
    pictures = sample_numbers(mnist.test_images, mnist.test_labels, 2, seed=4, lengths=(4,))
    return [picture.picture.data for picture in pictures]


def _files(*pictures: bytes) -> list:
    return [("file", (f"p{i}.png", data, "image/png")) for i, data in enumerate(pictures)]


def test_a_picture_of_thousands_of_marks_is_refused_saying_how_many(client):
    data = dot_grid(320, spacing=3)
    response = client.post("/read", files=_files(data))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "file[0] (p0.png): the picture holds 11449 separate marks" in error
    assert "a number is read from at most 200" in error


def test_digits_past_the_request_budget_get_an_error_in_their_place(app_client, client, numbers):
    alone = client.post("/read?variant=group", files=_files(numbers[0])).json()
    digits = len(alone["readings"][0]["number"])
    budgeted = app_client(max_digits_per_request=digits + 1)
    response = budgeted.post("/read?variant=group", files=_files(*numbers))
    assert response.status_code == 200, response.text
    first, second = response.json()["readings"]
    assert first == alone["readings"][0]
    assert "more than the 1 left to read (MNIST_MAX_DIGITS_PER_REQUEST" in second["error"]


@pytest.mark.parametrize(
    ("bomb", "what"),
    [(tile_bomb_tiff, "1000000 TIFF tiles"), (strip_bomb_tiff, "1000000 TIFF strips")],
)
def test_a_tiff_of_a_million_blocks_is_refused_before_pillow_opens_it(
    client, monkeypatch, bomb, what
):
    opened = []
    real_open = decoding.Image.open
    monkeypatch.setattr(
        decoding.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k)
    )
    response = client.post("/predict", content=bomb(), headers={"content-type": "image/tiff"})
    assert response.status_code == 400, response.text
    assert f"image holds {what} (more than 16384)" in response.json()["error"]
    assert opened == []


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/read", "varient=group", "/read takes no query parameter 'varient'; it takes backend, "),
        ("/read", "strict=maybe", "query.strict: 'maybe' is not a boolean"),
        ("/predict", "strict=maybe", "query.strict: 'maybe' is not a boolean"),
        ("/predict", "varient=group", "/predict takes no query parameter 'varient'"),
        ("/read", "return_input=maybe", "query.return_input: 'maybe' is not a boolean"),
    ],
)
def test_every_route_checks_its_query_parameters(client, mnist, path, query, message):
    body = {"pixels": [mnist.test_images[0].tolist()]}
    response = client.post(f"{path}?{query}", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_the_protocol_answers_with_the_parameters_it_knows(client, mnist):
    digit = (mnist.test_images[0] / 255).ravel().tolist()
    request = {
        "inputs": [{"name": "image", "shape": [1, 28, 28], "datatype": "FP32", "data": digit}],
        "parameters": {"k" * 1000: "v" * 1000, "precision": "fp32"},
    }
    response = client.post("/v2/models/group/infer", json=request)
    assert response.status_code == 200, response.text
    assert response.json()["parameters"] == {"precision": "fp32"}


def test_a_reading_past_its_deadline_stops_inside_segmentation(app_client, monkeypatch, numbers):
    """A judge slower than the deadline: the 504 comes once the reading's thread has stopped,
    and it stopped at its next check, not after the picture."""
    running, calls = threading.Event(), []
    real_judge = DigitCheck.judge

    def slow_judge(self, framed):
        running.set()
        calls.append(len(framed))
        released.wait(0.2)  # each call blocks until the deadline has long passed
        running.clear()
        return real_judge(self, framed)

    released = threading.Event()
    monkeypatch.setattr(DigitCheck, "judge", slow_judge)
    client = app_client(request_timeout_s=0.3)
    touching = zigzag_stroke()
    response = client.post("/read?variant=group", files=_files(touching))
    assert response.status_code == 504, response.text
    assert not running.is_set()  # answered only once the thread's work stopped
    assert 1 <= len(calls) <= 3  # the call in progress at the deadline, then a check stopped it


def test_readings_take_turns_a_picture_at_a_time(numbers):
    """A request of several pictures and one of a single picture, both reading numbers: the
    later one's picture is read after the earlier one's current picture, not after all."""
    order: list[str] = []
    first_started, go_on = threading.Event(), threading.Event()
    real_step = decoding.Decoding.step

    def step(self, index, opened, stop=None):
        order.append(opened[0])
        if opened[0] == "long[0]":
            first_started.set()
            go_on.wait(10)
        return real_step(self, index, opened, stop)

    limits = Limits(max_images=8, max_image_pixels=10**7, max_request_pixels=10**8)

    async def both() -> None:
        long = asyncio.create_task(
            decode_work.decode_files([(f"long[{i}]", numbers[0]) for i in range(4)], limits, True)
        )
        await asyncio.get_running_loop().run_in_executor(None, first_started.wait, 10)
        short = asyncio.create_task(decode_work.decode_files([("short", numbers[1])], limits, True))
        while decode_work._NUMBER_THREAD._work_queue.qsize() == 0:  # short's step queued
            await asyncio.sleep(0.001)
        go_on.set()
        await asyncio.gather(long, short)

    original = decoding.Decoding.step
    decoding.Decoding.step = step
    try:
        asyncio.run(both())
    finally:
        decoding.Decoding.step = original
    assert order == ["long[0]", "short", "long[1]", "long[2]", "long[3]"]


def test_a_reading_never_holds_up_a_pictures_decoding(numbers):
    """While the number-reading thread is busy, a large `/predict` picture is decoded."""
    blocked, release = threading.Event(), threading.Event()

    def busy(stop: threading.Event) -> None:
        blocked.set()
        release.wait(10)

    limits = Limits(max_images=1, max_image_pixels=10**7, max_request_pixels=10**7)
    large = io.BytesIO()
    canvas = np.full((600, 600), 255, np.uint8)
    canvas[150:450, 280:320] = 0
    Image.fromarray(canvas).save(large, "PNG")

    async def both() -> np.ndarray:
        reading = asyncio.create_task(
            decode_work.in_stoppable_thread(busy, thread=decode_work._NUMBER_THREAD)
        )
        await asyncio.get_running_loop().run_in_executor(None, blocked.wait, 10)
        decoded = await decode_work.decode_files([("large", large.getvalue())], limits)
        assert not release.is_set()  # decoded while the reading still held its thread
        release.set()
        await reading
        return decoded.digits

    assert asyncio.run(both()).shape == (1, 28, 28)
