"""Overload, deadlines, hostile inputs and shutdown: the service sheds what it cannot serve in
time, drops work nobody waits for, bounds each request's decoding and finishes what it accepted.
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from devtools.committed import committed_models
from devtools.servers import Server, free_port
from service.app import create_app
from service.dataplane.admission import Admission
from service.errors import Overloaded
from service.rest.multipart import _PartCollector
from service.settings import Settings
from tests.conftest import wait_ready

MODELS = committed_models()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digit() -> bytes:
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 12:16] = 255  # a "1"
    return png(image)


def multipart(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


def metric(client: TestClient | httpx.Client, prefix: str) -> float:
    lines = client.get("/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


class SlowModel:
    """Stands in for a model's predict: takes `seconds` and counts the images it saw."""

    def __init__(self, predict, seconds: float) -> None:
        self.predict, self.seconds, self.calls = predict, seconds, []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        time.sleep(self.seconds)
        return self.predict(images)


def slow_down(app, seconds: float, variant: str = "group") -> SlowModel:
    model = app.state.registry.model(variant)
    batcher = model.batchers["onnx", model.precisions[0]]  # what a request naming none runs
    slow = SlowModel(batcher._predict, seconds)
    batcher._predict = slow
    batcher._inline_lone_requests = False  # the slow model stands for a busy inference thread
    return slow


@pytest.fixture
def serve() -> Iterator:
    clients = []

    def start(**settings: object) -> TestClient:
        client = TestClient(create_app(Settings(models_dir=MODELS, **settings)))  # type: ignore[arg-type]
        client.__enter__()
        clients.append(client)
        wait_ready(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


# -- 1. load shedding -------------------------------------------------------------------------


def test_admission_bounds_the_queue_and_estimates_the_wait():
    admission = Admission(max_queued_images=10)
    admission.admit(64)  # larger than the bound, but nothing queued: it must get in
    with pytest.raises(Overloaded) as shed:
        admission.admit(1)
    assert shed.value.headers == {"Retry-After": "1"}
    admission.release(64)
    admission.admit(6)
    admission.admit(4)
    with pytest.raises(Overloaded, match=r"10 images waiting for inference, MNIST_MAX_QUEUED"):
        admission.check_room()


def test_a_full_queue_sheds_with_503_and_retry_after(serve, digit):
    client = serve()
    client.app.state.dataplane._admission.queued = 10_000  # as if 10,000 images were waiting
    response = client.post("/predict", files=multipart([digit]))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"].startswith(
        "the service is at capacity (10000 images waiting for inference, "
        "MNIST_MAX_QUEUED_IMAGES=256); retry in 1 s."
    )
    assert metric(client, 'mnist_requests_shed_total{variant="group"}') == 1
    assert metric(client, 'mnist_requests_total{status="503",variant="group"}') == 1


def test_under_overload_some_requests_are_shed_and_the_rest_served(serve, digit):
    client = serve(max_queued_images=16)
    slow_down(client.app, 0.05)
    statuses: list[int] = []

    def post() -> None:
        response = client.post("/predict", files=multipart([digit] * 16))
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1

    threads = [threading.Thread(target=post) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 503}, statuses


# -- 2. deadlines and disconnects --------------------------------------------------------------


def test_a_request_past_its_deadline_gets_504_and_its_queued_work_is_dropped(serve, digit):
    client = serve(request_timeout_s=0.2)
    slow = slow_down(client.app, 0.6)
    first = threading.Thread(
        target=client.post, args=("/predict",), kwargs={"files": multipart([digit])}
    )
    first.start()  # occupies the inference thread for 0.6 s
    time.sleep(0.1)
    response = client.post("/predict", files=multipart([digit] * 3))  # queued behind it
    first.join()
    assert response.status_code == 504
    assert response.json()["error"].startswith(
        "the request was not answered within MNIST_REQUEST_TIMEOUT_S=0.2 s; its queued work "
        "was dropped."
    )
    time.sleep(0.8)  # the batcher is free again: the dropped request must not be inferred
    assert slow.calls == [1]


def test_a_client_that_disconnects_has_its_queued_work_dropped(digit):
    app = create_app(Settings(models_dir=MODELS))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_url_ready(url)
        slow = slow_down(app, 0.6)
        first = threading.Thread(
            target=httpx.post,
            args=(f"{url}/predict",),
            kwargs={"content": digit, "headers": {"content-type": "image/png"}, "timeout": 10},
        )
        first.start()
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port)) as sock:  # queued, then gone
            body = digit * 1  # one image
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.1)
        first.join()
        time.sleep(0.8)
        assert slow.calls == [1]
        assert metric(httpx.Client(base_url=url), 'mnist_requests_total{status="499"') == 1
    finally:
        server.should_exit = True
        thread.join()


def wait_url_ready(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("not ready")


# -- 3. cost bounded per request ---------------------------------------------------------------


def test_the_pixels_of_all_images_of_a_request_are_bounded(serve):
    client = serve(max_request_pixels=2000)
    canvas = np.zeros((40, 40), np.uint8)
    canvas[8:32, 18:22] = 255
    picture = png(canvas)  # a "1" in 1,600 pixels
    response = client.post("/predict", files=multipart([picture, picture]))
    assert response.status_code == 413
    assert response.json()["error"] == (
        "file[1] (1.png) brings the request to 3200 pixels, over the limit of 2000 for all its "
        "images together (MNIST_MAX_REQUEST_PIXELS). Send smaller pictures (a digit needs no "
        "more than a few hundred pixels a side) or fewer per request."
    )


def test_a_large_body_over_the_pixel_limit_is_refused_before_the_rest_is_split(serve, monkeypatch):
    client = serve(max_request_pixels=200_000)
    noise = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)
    pictures = [png(noise)] * 10  # 90,000 pixels each, ~90 KB: a body over 256 KB
    begun: list[int] = []
    original = _PartCollector._begin
    monkeypatch.setattr(_PartCollector, "_begin", lambda self: begun.append(1) or original(self))
    response = client.post("/predict", files=multipart(pictures))
    assert response.status_code == 413
    assert response.json()["error"].startswith(
        "file[2] (2.png) brings the request to 270000 pixels, over the limit of 200000"
    )
    assert len(begun) == 3  # the parts after the third were never split out


# -- 4. shutdown, idle and slow connections ----------------------------------------------------


def test_draining_turns_readiness_503(serve):
    client = serve()
    client.app.state.dataplane.draining = True
    response = client.get("/health/ready")
    assert response.status_code == 503 and response.json()["draining"] is True
    assert client.get("/v2/health/ready").status_code == 503


@pytest.mark.parametrize(("workers", "run"), [(w, r) for w in (1, 2) for r in range(3)])
def test_sigterm_answers_every_request_sent_before_it_and_exits_0(digit, workers, run):
    """SIGTERM right after 24 clients have sent their requests (some still in the accept queue,
    some unread on their connections): every one is answered. Run six times: a flake fails."""
    settings = {
        "MNIST_SHUTDOWN_GRACE_S": "10",
        "MNIST_MAX_QUEUED_IMAGES": "100000",
        "MNIST_WORKERS": str(workers),
    }
    server = Server(MODELS, settings | {"MNIST_LOG_LEVEL": "info"})
    server.wait_loaded()
    request = httpx.Request("POST", server.url, files=multipart([digit] * 64))
    body, content_type = request.read(), request.headers["content-type"]
    sent, statuses = threading.Semaphore(0), []

    def heavy() -> None:  # 64 images through the three models: ~70 ms of inference each
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("POST", "/predict?variant=all", body, {"content-type": content_type})
        sent.release()
        statuses.append(connection.getresponse().status)

    threads = [threading.Thread(target=heavy) for _ in range(24)]
    for thread in threads:
        thread.start()
    for _ in threads:
        sent.acquire()  # its bytes are on the way: SIGTERM now
    started = time.monotonic()
    server.terminate()
    for thread in threads:
        thread.join()
    output = server.stop(timeout_s=15)
    assert statuses == [200] * 24
    assert server.process.returncode == 0, output
    assert time.monotonic() - started < 10
    assert "SIGTERM: not ready any more" in output


def test_idle_and_trickling_connections_do_not_stop_others(digit):
    server = Server(MODELS)
    idle: list[socket.socket] = []
    try:
        server.wait_loaded()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        trickler = socket.create_connection(("127.0.0.1", server.port))
        trickler.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            + f"Content-Length: {len(digit)}\r\n\r\n".encode()
        )
        latencies = []
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for index in range(20):
                trickler.send(digit[index : index + 1])  # a byte at a time
                started = time.perf_counter()
                response = client.post(
                    "/predict", content=digit, headers={"content-type": "image/png"}
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200
        assert max(latencies) < 1.0, latencies
        trickler.close()
    finally:
        for sock in idle:
            sock.close()
        server.stop()
