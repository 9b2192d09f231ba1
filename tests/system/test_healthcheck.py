"""The container's liveness probe (`python -m service.healthcheck`), as the Dockerfile and the
Compose file run it: against a real service, with its hosts narrowed, and after it has gone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from devtools import REPO_ROOT
from devtools.committed import committed_models
from devtools.servers import Server
from service.healthcheck import probe_host

PROBE = ["python", "-m", "service.healthcheck"]


def _probe(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    variables = {**os.environ, "MNIST_PORT": str(port), **env}
    return subprocess.run(
        [sys.executable, *PROBE[1:]], env=variables, capture_output=True, text=True, timeout=30
    )


def test_the_dockerfile_and_compose_run_the_probe_with_no_argument_holding_a_space():
    """Podman 4's Docker-compatible API splits healthcheck arguments at spaces."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["api"]["healthcheck"]["test"] == ["CMD", *PROBE]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    healthcheck = re.search(r"^HEALTHCHECK .* CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert healthcheck and yaml.safe_load(healthcheck.group(1)) == PROBE


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["*"], "127.0.0.1"),
        (["localhost", "*"], "127.0.0.1"),
        (["mnist.example.com", "localhost"], "mnist.example.com"),
        (["*.example.com"], "healthcheck.example.com"),
    ],
)
def test_the_probe_sends_a_host_the_service_answers(allowed, host):
    assert probe_host(allowed) == host


def test_the_probe_passes_while_the_service_lives_and_says_why_it_fails_after():
    narrowed = {"MNIST_ALLOWED_HOSTS": "*.example.com", "MNIST_GRPC_PORT": "0"}
    server = Server(committed_models(), narrowed)
    try:
        deadline = time.monotonic() + 90
        while (probe := _probe(server.port, **narrowed)).returncode != 0:
            assert time.monotonic() < deadline, probe.stderr + server.output()
            time.sleep(0.2)
        # The narrowing is real: the Host a plain request sends gets 400.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.url}/health/live", timeout=5)
        assert refused.value.code == 400
    finally:
        server.stop()
    gone = _probe(server.port, **narrowed)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"unhealthy: http://127.0.0.1:{server.port}/health/live: ")


def test_invalid_settings_make_the_probe_fail_saying_which():
    probe = _probe(8000, MNIST_ALLOWED_HOSTS="ex*ample.com")
    assert probe.returncode == 1
    assert "unhealthy: invalid settings" in probe.stderr and "ex*ample.com" in probe.stderr
