"""A real `python -m service` for tests that need sockets (browsers, stock protocol clients)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m service` in a subprocess: tritonclient.grpc registers the protocol's proto
    messages in this process, and the service's own stubs define the same names."""

    def __init__(self, models_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        env = {
            **os.environ,
            "MNIST_PORT": str(self.port),
            "MNIST_GRPC_PORT": str(self.grpc_port),
            "MNIST_MODELS_DIR": str(models_dir),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_loaded(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read().decode()
            try:
                if not httpx.get(f"{self.url}/health/ready").json()["loading"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not finish loading")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=20)
