"""The service as the tests and benchmarks run it: `python -m service` (the container's
command) in a subprocess on free ports, waited for, its CPU time and memory read from /proc."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from devtools import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(port: int, models_dir: Path, **env: str) -> subprocess.Popen:
    """`python -m service` (the container's command) with one worker, gRPC off, until ready:
    the CPU and memory figures of the benchmarks that use it are read from that one process."""
    variables = {
        **os.environ,
        "MNIST_HOST": "127.0.0.1",
        "MNIST_PORT": str(port),
        "MNIST_GRPC_PORT": "0",
        "MNIST_WORKERS": "1",
        "MNIST_MODELS_DIR": str(models_dir),
        "MNIST_LOG_LEVEL": "warning",
        **env,
    }
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=variables)
    wait_for(port, "/health/ready", server)
    return server


def wait_for(port: int, path: str, process: subprocess.Popen, answers: int = 1) -> None:
    """Until `answers` requests in a row succeed (several: every worker has loaded)."""
    deadline, streak = time.monotonic() + 90, 0
    while time.monotonic() < deadline and streak < answers:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                streak += 1
        except OSError:
            streak = 0
            time.sleep(0.2)
    if streak < answers:
        process.kill()
        process.wait()
        raise RuntimeError(f"server on port {port} did not answer {path} within 90 s")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def settled_cpu(pid: int) -> float:
    """The worker's CPU seconds once they stop growing (its threads have finished)."""
    last = cpu_seconds(pid)
    while True:
        time.sleep(0.25)
        now = cpu_seconds(pid)
        if now - last < 0.01:
            return now
        last = now


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
        # Its output goes to a file, not a pipe nobody reads while it runs: a full pipe would
        # block the server's logging, and the server with it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the server has printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def wait_loaded(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if not httpx.get(f"{self.url}/health/ready").json()["loading"]:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not finish loading")

    def terminate(self) -> None:
        """SIGTERM: the service drains and exits (`stop` waits for it)."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 20) -> str:
        """SIGTERM, then wait for the exit; what the server printed."""
        self.terminate()
        self.process.wait(timeout=timeout_s)
        output = self.output()
        self._log.close()
        return output
