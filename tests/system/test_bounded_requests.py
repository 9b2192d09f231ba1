"""Issue 34's attacks against `python -m service` (one worker, the committed models, a 5 s
deadline, a 2 s shutdown grace): each small hostile picture is answered with a client error
or within its deadline, and SIGTERM with a reading in flight ends the process.

The figures (seconds of CPU, RSS, a light client's p99 beside each attack) are
`benchmarks/hostile.py`'s; here only what holds on a busy machine is asserted."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from devtools.committed import committed_models
from devtools.pictures.hostile import (
    dot_grid,
    many_small_digits,
    strip_bomb_tiff,
    tile_bomb_tiff,
    zigzag_stroke,
)
from devtools.servers import cpu_seconds, free_port, start_service

GRACE_S = 2


@pytest.fixture
def service():
    port = free_port()
    process = start_service(
        port,
        committed_models(),
        MNIST_REQUEST_TIMEOUT_S="5",
        MNIST_SHUTDOWN_GRACE_S=str(GRACE_S),
    )
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
        process.wait()


def test_small_hostile_pictures_are_answered_within_the_deadline(service):
    _, url = service
    png, tiff = {"content-type": "image/png"}, {"content-type": "image/tiff"}
    cases = [
        ("/read", png, dot_grid(320, 3), 422),
        ("/read", png, dot_grid(100, 3, bar_columns=2), None),
        ("/read", png, dot_grid(120, 3, dot=2), None),
        ("/read", png, many_small_digits(320, cell=16), 200),
        ("/predict", tiff, tile_bomb_tiff(), 400),
        ("/predict", tiff, strip_bomb_tiff(), 400),
    ]
    with httpx.Client(base_url=url, timeout=60) as client:
        for path, headers, body, expected in cases:
            assert len(body) < 10_000_000
            response = client.post(path, content=body, headers=headers)
            assert response.status_code < 500 or response.status_code == 504, response.text
            if expected is not None:
                assert response.status_code == expected, response.text


def test_sigterm_with_readings_in_flight_ends_the_process_within_its_grace(service):
    process, url = service
    files = [("file", (f"n{i}.png", zigzag_stroke(), "image/png")) for i in range(64)]
    answers: list[int | str] = []

    def read() -> None:
        try:
            with httpx.Client(timeout=60) as client:
                answers.append(client.post(f"{url}/read", files=files).status_code)
        except httpx.HTTPError as error:
            answers.append(type(error).__name__)

    before = cpu_seconds(process.pid)
    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 30
    while cpu_seconds(process.pid) - before < 0.3 and time.monotonic() < deadline:
        time.sleep(0.02)  # until the reading is under way
    process.send_signal(signal.SIGTERM)
    # Quiet wait (0.3 x grace), the grace, then the reading stopped at its next check.
    assert process.wait(timeout=GRACE_S * 1.3 + 10) == 0
    reader.join(timeout=30)
    assert answers and answers[0] != 200, answers
