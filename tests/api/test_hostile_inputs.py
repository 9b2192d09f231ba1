"""Inputs an attacker would send: each gets a 4xx that says what to send, costs bounded work,
keeps the event loop free and leaves no memory behind (gRPC: tests/system/test_grpc_limits.py)."""

from __future__ import annotations

import asyncio
import functools
import gc
import io
import json
import re
import socket
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from devtools.committed import committed_models
from devtools.payloads import progressive_jpeg
from devtools.servers import cpu_seconds, rss_mb, settled_cpu
from service.dataplane import decode_work
from service.dataplane.decoding import Limits
from service.dataplane.image_structure import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS

JSON = {"content-type": "application/json"}
PNG = {"content-type": "image/png"}
OCTETS = {"content-type": "application/octet-stream"}


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


def _many_segments(count: int) -> bytes:
    """A small JPEG with `count` empty comment segments before its frame."""
    buffer = io.BytesIO()
    Image.new("L", (28, 28), 200).save(buffer, "JPEG")
    data = buffer.getvalue()
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


def _many_chunks(count: int) -> bytes:
    """A 28x28 PNG with `count` empty private chunks before its pixels (CRCs not checked
    before the walk refuses it)."""
    data = _png(28, 28)
    return data[:33] + b"\x00\x00\x00\x00prIv\x00\x00\x00\x00" * count + data[33:]


def _v2_binary(shape: list[int], datatype: str = "FP32", size: int = 28 * 28 * 4) -> dict:
    item = {"name": "image", "datatype": datatype, "shape": shape}
    header = json.dumps({"inputs": [item | {"parameters": {"binary_data_size": size}}]})
    return {
        "content": header.encode() + bytes(size),
        "headers": {**OCTETS, "inference-header-content-length": str(len(header))},
    }


def _v2_json(document: dict | str) -> dict:
    content = document if isinstance(document, str) else json.dumps(document)
    return {"content": content, "headers": JSON}


_PIXELS = [[0.5] * 28] * 28
# (path, request, status, words the error must hold): each once answered 500 or cost seconds.
CASES = {
    "JSON nested 5,000 deep": (
        "/predict",
        {"content": "[" * 5000 + "]" * 5000, "headers": JSON},
        400,
        "depth limit exceeded",
    ),
    "an integer of 5,000 digits": (
        "/predict",
        {"content": '{"pixels": [' + "1" * 5000 + "]}", "headers": JSON},
        400,
        "number is infinity",
    ),
    "10**400 in pixels": (
        "/predict",
        {"content": '{"pixels": [[[1' + "0" * 400 + "]]]}", "headers": JSON},
        400,
        "number is infinity",
    ),
    "a multipart boundary of 300 characters": (
        "/predict",
        {
            "content": b"--" + b"a" * 300 + b"\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=" + "a" * 300},
        },
        400,
        "boundary is 300 characters",
    ),
    "a version of 5,000 digits": (
        "/predict?version=" + "9" * 5000,
        {"content": _png(28, 28), "headers": PNG},
        400,
        "at most 18 digits",
    ),
    "an Inference-Header-Content-Length of 5,000 digits": (
        "/v2/models/group/infer",
        {"content": b"{}", "headers": {**OCTETS, "inference-header-content-length": "9" * 5000}},
        400,
        "byte count",
    ),
    "binary shape [-1, -1]": ("/v2/models/group/infer", _v2_binary([-1, -1]), 400, "negative"),
    "binary shape [2**60, 28, 28]": (
        "/v2/models/group/infer",
        _v2_binary([2**60, 28, 28]),
        413,
        "elements, more than",
    ),
    "JSON shape [2**62, 28, 28]": (
        "/v2/models/group/infer",
        _v2_json({"inputs": [{"name": "image", "datatype": "FP32", "shape": [2**62, 28, 28]}]}),
        413,
        "elements, more than",
    ),
    "INT8 data 1000": (
        "/v2/models/group/infer",
        _v2_json(
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "INT8",
                        "shape": [1, 28, 28],
                        "data": [1000] * 784,
                    }
                ]
            }
        ),
        400,
        "within its range",
    ),
    "a million BYTES elements for a shape of one": (
        "/v2/models/group/infer",
        {
            "content": (
                h := json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "image_bytes",
                                "datatype": "BYTES",
                                "shape": [1],
                                "parameters": {"binary_data_size": 4_000_000},
                            }
                        ]
                    }
                )
            ).encode()
            + bytes(4_000_000),
            "headers": {**OCTETS, "inference-header-content-length": str(len(h))},
        },
        400,
        "more than the shape's 1",
    ),
    "NaN among the echoed parameters": (
        "/v2/models/group/infer",
        _v2_json(
            '{"parameters": {"x": NaN}, "inputs": [{"name": "image", "datatype": "FP32", '
            '"shape": [1, 28, 28], "data": ' + json.dumps(_PIXELS) + "}]}"
        ),
        400,
        "NaN or Infinity",
    ),
    'binary_data_output "false" (a string)': (
        "/v2/models/group/infer",
        _v2_json(
            {
                "parameters": {"binary_data_output": "false"},
                "inputs": [
                    {"name": "image", "datatype": "FP32", "shape": [1, 28, 28], "data": _PIXELS}
                ],
            }
        ),
        400,
        "true or false",
    ),
    "3 MB of JSON": (
        "/predict",
        {"content": b'{"pixels": []}' + b" " * 3_000_000, "headers": JSON},
        413,
        "MNIST_MAX_JSON_BYTES",
    ),
    "3 MB of Open Inference Protocol JSON": (
        "/v2/models/group/infer",
        {"content": b'{"inputs": []}' + b" " * 3_000_000, "headers": JSON},
        413,
        "binary tensor data extension",
    ),
    "a 300x3 picture": ("/predict", {"content": _png(300, 3), "headers": PNG}, 422, "no digit"),
    f"a progressive JPEG of {MAX_JPEG_SCANS + 6} scans": (
        "/predict",
        {
            "content": progressive_jpeg(4000, MAX_JPEG_SCANS + 6),
            "headers": {"content-type": "image/jpeg"},
        },
        400,
        f"more than {MAX_JPEG_SCANS} JPEG scans",
    ),
    "a JPEG of 300 empty segments": (
        "/predict",
        {"content": _many_segments(300), "headers": {"content-type": "image/jpeg"}},
        400,
        f"more than {MAX_JPEG_SEGMENTS} JPEG marker segments",
    ),
    "a PNG of 10,000 empty chunks": (
        "/predict",
        {"content": _many_chunks(10_000), "headers": PNG},
        400,
        f"more than {MAX_PNG_CHUNKS} PNG chunks",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_gets_a_4xx_that_says_what_is_wrong(answering_client, case):
    path, request, status, words = CASES[case]
    response = answering_client.post(path, **request)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_a_real_progressive_jpeg_and_a_phone_jpeg_still_read(answering_client, mnist):
    digit = Image.fromarray(255 - mnist.test_images[0]).resize((400, 400))
    for progressive in (False, True):
        buffer = io.BytesIO()
        digit.save(buffer, "JPEG", progressive=progressive, quality=90)
        response = answering_client.post("/predict", content=buffer.getvalue(), headers=PNG)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["digit"] == mnist.test_labels[0]


# -- where the work runs ----------------------------------------------------------------------


def test_a_picture_declaring_many_pixels_is_decoded_off_the_event_loop(monkeypatch):
    """2 KB of lossless WebP can declare 16 megapixels: the declared size decides, not bytes."""
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000), 255).save(buffer, "WEBP", lossless=True)
    assert len(buffer.getvalue()) < 16 * 1024
    threads = []
    real = decode_work.Decoding.step

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_work.Decoding, "step", recording)
    limits = Limits(max_images=4, max_image_pixels=16_000_000, max_request_pixels=64_000_000)
    small = _png(28, 28)

    async def decode_both() -> threading.Thread:
        with pytest.raises(Exception, match="no digit"):
            await decode_work.decode_files([("big", buffer.getvalue())], limits)
        with pytest.raises(Exception, match="no digit"):
            await decode_work.decode_files([("small", small)], limits)
        return threading.current_thread()

    loop_thread = asyncio.run(decode_both())
    assert threads[0] is not loop_thread  # 16 megapixels: in a thread
    assert threads[1] is loop_thread  # a 28x28 picture: inline, no hop


def test_a_cancelled_request_stops_its_thread_and_waits_for_it():
    """The thread's work stops at its next step, and the cancellation returns only once it
    has (the request stays admitted until its CPU is really free)."""
    started, finished, steps = threading.Event(), threading.Event(), []

    def work(stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                steps.append(sum(range(1000)))
                started.set()
        finally:
            finished.set()

    async def cancel_it() -> None:
        task = asyncio.create_task(decode_work.in_stoppable_thread(work))
        await asyncio.get_running_loop().run_in_executor(None, started.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()

    asyncio.run(cancel_it())
    assert steps


def test_an_error_from_a_thread_leaves_no_reference_cycle(answering_client):
    """A failed request's exception must not keep its body alive until a full collection."""
    body = json.dumps({"pixels": [[[300] * 28] * 28] * 64}).encode()
    body += b" " * (decode_work.INLINE_BYTES * 2 - len(body))  # parsed in a thread
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            assert answering_client.post("/predict", content=body, headers=JSON).status_code == 400
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        in_cycles = [  # the test client's own stream errors aside: the service's frames
            f"{o.f_code.co_filename}:{o.f_code.co_name}"
            for o in gc.garbage
            if isinstance(o, types.FrameType) and "/service/" in o.f_code.co_filename
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert in_cycles == []


def test_failing_large_requests_do_not_pin_memory(server_process_rss):
    """4 clients x 15 requests of 3.8 MB that each get 400 from the decoding thread: the
    server's RSS stays within 50 MB of where it started (failed requests once pinned ~30 MB
    each until a full collection)."""
    url, rss_mb = server_process_rss
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    body = buffer.getvalue()[:3_800_000]  # cut short: "could not be decoded"

    def client_posts(_: int) -> list[int]:
        with httpx.Client(timeout=60) as http:
            return [
                http.post(f"{url}/predict", content=body, headers=PNG).status_code
                for _ in range(15)
            ]

    client_posts(0)  # the allocator's arenas warmed up
    before = rss_mb()
    with ThreadPoolExecutor(4) as pool:
        statuses = [s for answers in pool.map(client_posts, range(4)) for s in answers]
    assert set(statuses) == {400}
    assert rss_mb() - before < 50


@pytest.fixture
def server_process_rss():
    from devtools.servers import Server

    running = Server(committed_models(), env={"MNIST_GRPC_PORT": "0"})
    try:
        running.wait_loaded()
        yield running.url, functools.partial(rss_mb, running.process.pid)
    finally:
        running.stop()


# -- the HTTP server's own limits -------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server():
    from devtools.servers import Server

    env = {"MNIST_GRPC_PORT": "0", "MNIST_HEADER_TIMEOUT_S": "1"}
    running = Server(committed_models(), env=env)
    try:
        running.wait_loaded()
        yield running
    finally:
        running.stop()


def _answer(port: int, sent: bytes) -> tuple[bytes, bytes]:
    """(what the server answered, what it sent after: b"" once it closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        if sent:
            connection.sendall(sent)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer, connection.recv(4096)


def test_a_header_block_over_the_limit_gets_431_and_the_connection_closed(http_server):
    # Unfinished, and only just over: a client still sending when the server closes gets a
    # reset that may swallow the answer.
    header = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000
    answer, after = _answer(http_server.port, header)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"MNIST_MAX_HEADER_BYTES" in answer
    assert after == b""


@pytest.mark.parametrize("sent", [b"", b"GET /health/live HTTP/1.1\r\nHost: x\r\n"])
def test_a_connection_without_complete_headers_gets_408_and_is_closed(http_server, sent):
    answer, after = _answer(http_server.port, sent)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"MNIST_HEADER_TIMEOUT_S" in answer
    assert after == b""


def test_keep_alive_requests_are_not_cut_by_the_header_timer(http_server):
    with httpx.Client(base_url=http_server.url) as http:
        assert [http.get("/health/live").status_code for _ in range(3)] == [200] * 3


def test_a_timed_out_request_stops_using_cpu(tmp_path):
    """8 pictures that cost ~0.2 s of CPU each and a 0.3 s deadline: after the 504 the
    worker stops within one picture, not after all eight."""
    from devtools.servers import Server

    picture = progressive_jpeg(2400, MAX_JPEG_SCANS)  # the most scans allowed
    files = [("file", (f"{i}.jpg", picture, "image/jpeg")) for i in range(8)]
    env = {"MNIST_GRPC_PORT": "0", "MNIST_REQUEST_TIMEOUT_S": "0.3"}
    running = Server(committed_models(), env=env)
    try:
        running.wait_loaded()
        pid = running.process.pid
        before = cpu_seconds(pid)
        response = httpx.post(f"{running.url}/predict", files=files, timeout=60)
        assert response.status_code == 504, response.text
        assert settled_cpu(pid) - before < 0.3 + 0.6  # the deadline, one picture and the answer
    finally:
        running.stop()


def test_connections_are_bounded_by_the_descriptor_limit(monkeypatch):
    from service.rest import http_limits

    monkeypatch.setattr(http_limits.resource, "getrlimit", lambda _: (1024, 4096))
    assert http_limits.connection_limit() == 1024 - http_limits.RESERVED_DESCRIPTORS
    monkeypatch.setattr(http_limits.resource, "getrlimit", lambda _: (40, 4096))
    assert http_limits.connection_limit() == 8  # a worker still takes a few
    infinity = http_limits.resource.RLIM_INFINITY
    monkeypatch.setattr(http_limits.resource, "getrlimit", lambda _: (infinity, infinity))
    assert http_limits.connection_limit() is None


def test_the_event_loop_lag_is_measured(answering_client):
    """`mnist_event_loop_lag_seconds` gains observations while the service runs."""

    def observations() -> float:
        text = answering_client.get("/metrics").text
        return float(re.search(r"mnist_event_loop_lag_seconds_count (\S+)", text).group(1))

    first = observations()
    deadline = time.monotonic() + 30
    while observations() <= first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert observations() > first
