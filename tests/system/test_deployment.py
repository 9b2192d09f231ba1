"""The container's serve command, run outside Docker exactly as the image would run it."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from PIL import Image

from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.servers import free_port
from service.settings import env_table


def _serve_stage() -> tuple[dict[str, str], list[str]]:
    """ENV and CMD of the Dockerfile's `serve` stage."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.split(" AS serve\n", 1)[1].split("\nFROM ", 1)[0]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", stage, re.MULTILINE):
        env.update(re.findall(r"(\w+)=(\S+)", line))
    command = json.loads(re.search(r"^CMD (\[.*\])$", stage, re.MULTILINE).group(1))
    return env, command


def test_image_command_serves_predictions(mnist):
    env, command = _serve_stage()
    assert command == ["python", "-m", "service"]
    assert env["MNIST_HOST"] == "0.0.0.0" and env["MNIST_MODELS_DIR"] == "/app/models"
    port = free_port()
    # Same module and variables; only what differs outside the image is replaced: the
    # interpreter's path, the port (to avoid clashes) and where models/ lives.
    env |= {
        "MNIST_PORT": str(port),
        "MNIST_GRPC_PORT": str(free_port()),
        "MNIST_MODELS_DIR": str(committed_models()),
    }
    process = subprocess.Popen(
        [sys.executable, *command[1:]],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, process)
        buffer = io.BytesIO()
        Image.fromarray(mnist.test_images[0]).save(buffer, "PNG")
        request = urllib.request.Request(
            f"{base}/predict?variant=all",
            data=buffer.getvalue(),
            headers={"Content-Type": "image/png"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        digits = {v: r["predictions"][0]["digit"] for v, r in body["results"].items()}
        assert digits == {v: int(mnist.test_labels[0]) for v in ("group", "instance", "layer")}
    finally:
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        output = process.communicate(timeout=20)[0].decode()
    # Graceful: the lifespan shutdown ran to the end. uvicorn then re-raises SIGTERM, so the
    # exit status is "terminated by SIGTERM", as Docker expects from `docker stop`.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Finished server process" in output


def _wait_ready(base: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode())
        try:
            with urllib.request.urlopen(f"{base}/health/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not become ready")


def test_configuration_env_table_matches_settings():
    configuration = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert env_table() in configuration, "regenerate with: python -m service --print-env-table"


def test_compose_api_uses_the_serve_target_and_settings_variables():
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    from service.settings import Settings

    known = {f"MNIST_{name.upper()}" for name in Settings.model_fields}
    used = set(re.findall(r"^\s+(MNIST_\w+):", compose, re.MULTILINE))
    assert used and used <= known, used - known
    assert "target: serve" in compose and 'profiles: ["train"]' in compose


def test_serve_command_rejects_missing_models_dir(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service", "--models-dir", str(tmp_path / "nope")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "models directory" in result.stderr and "does not exist" in result.stderr


def test_dockerignore_keeps_tests_and_caches_out():
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for entry in ("tests", ".venv", ".git", "**/__pycache__", "data"):
        assert entry in ignored
    # The serving image bakes models/ in: only the unused .keras copies may be left out.
    assert [line for line in ignored if line.startswith("models")] == ["models/**/model.keras"]
