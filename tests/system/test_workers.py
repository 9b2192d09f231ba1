"""Two uvicorn workers: one `/metrics` scrape, whichever worker answers it, counts every
request; each takes a slot on the workers' board and leaves it at 0."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import httpx
from PIL import Image

from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.servers import free_port
from service.runtime.in_flight import BOARD_SLOTS

REQUESTS = 24


def _count(metrics: str) -> float:
    match = re.search(
        r'^mnist_requests_total\{status="200",variant="group"\} (\S+)$', metrics, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_metrics_sum_every_worker(mnist, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "MNIST_PORT": str(port),
        "MNIST_GRPC_PORT": "0",
        "MNIST_MODELS_DIR": str(committed_models()),
        "MNIST_VARIANTS": "group",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--workers", "2"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        buffer = io.BytesIO()
        Image.fromarray(mnist.test_images[0]).save(buffer, "PNG")
        sent = 0
        # A new connection each: the kernel spreads them over the workers, by chance; sent
        # until both have served (each writes its own counter file), at least REQUESTS.
        while sent < REQUESTS or len(list(tmp_path.glob("counter_*.db"))) < 2:
            assert sent < 20 * REQUESTS, "one worker took every connection"
            with httpx.Client() as client:
                response = client.post(
                    f"{url}/predict",
                    content=buffer.getvalue(),
                    headers={"content-type": "image/png"},
                )
                assert response.status_code == 200
            sent += 1
        scrapes = []
        for _ in range(6):
            with httpx.Client() as client:
                scrapes.append(_count(client.get(f"{url}/metrics").text))
        assert scrapes == [sent] * 6
        # Each took a slot on the board, and every request answered left it at 0.
        assert sorted(path.name for path in tmp_path.glob("worker-*.lock")) == [
            "worker-0.lock",
            "worker-1.lock",
        ]
        board = memoryview((tmp_path / "in_flight.board").read_bytes()).cast("q")
        assert len(board) == 2 * BOARD_SLOTS and not any(board[:BOARD_SLOTS])  # counts, times
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert "Finished server process" in output


def _wait_ready(url, process, timeout_s: float = 90) -> None:
    """Ready, as answered over several connections (so both workers, most likely)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        try:
            if {httpx.get(f"{url}/health/ready").status_code for _ in range(8)} == {200}:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the workers did not become ready")
