"""`docker compose up` for real, checked as a user would check it. The tests share one running
stack and run in file order: serving, health, gRPC, a retrain through the train profile, then
`stop` with requests in flight and `down`."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from devtools import REPO_ROOT
from mnist_shared.preprocessing import scale_pixels
from tests.deploy.conftest import USER_ID, Stack, models_listing, predict_the_example_seven

pytestmark = pytest.mark.deploy

EXAMPLES = REPO_ROOT / "examples"
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _grace_s() -> float:
    return float(COMPOSE["services"]["api"]["stop_grace_period"].removesuffix("s"))


def test_predict_and_read_answer_on_the_published_port(stack: Stack):
    predict_the_example_seven(stack.url)
    number = {"file": ("number.jpg", (EXAMPLES / "number-2024.jpg").read_bytes(), "image/jpeg")}
    reading = httpx.post(f"{stack.url}/read?variant=group", files=number, timeout=30)
    assert reading.status_code == 200, reading.text
    assert reading.json()["readings"][0]["number"] == "2024"


def test_ready_and_the_healthcheck_reports_healthy(stack: Stack):
    ready = httpx.get(f"{stack.url}/health/ready", timeout=10).json()
    assert ready["ready"] and set(ready["loaded"]) == {"group", "instance", "layer"}
    # The check the engine holds is the one the Compose file wrote, argument for argument
    # (podman 4's API once split it at spaces, and every container turned unhealthy).
    configured = json.loads(stack.inspect("{{json .Config.Healthcheck.Test}}"))
    assert configured == COMPOSE["services"]["api"]["healthcheck"]["test"]
    assert stack.engine.health(stack.container()) == "healthy"


def test_grpc_answers_on_the_published_port(stack: Stack, mnist):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    assert client.is_server_ready() and client.is_model_ready("layer")
    images = scale_pixels(mnist.test_images[:8])
    tensor = grpcclient.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = client.infer("layer", [tensor])
    digits = result.as_numpy("digit").tolist()
    assert np.mean(np.array(digits) == mnist.test_labels[:8]) >= 7 / 8


def test_the_train_profile_writes_a_version_the_api_treats_as_the_gate_says(
    stack: Stack, mnist_dir
):
    """The trainer (uid 1000, the checkout's owner) writes version 4 into models/; the API (uid
    10001, a read-only mount) finds it by polling and, one epoch being far worse than the
    committed version, holds it back as a candidate and serves the committed one."""
    committed = models_listing(stack)["group"]["served_version"]
    run = stack.compose(
        *("--profile", "train", "run", "--rm", "trainer"),
        *("--variant", "group", "--epochs", "1", "--data-dir", "/data"),
        *("--output-dir", "/app/models"),
        check=False,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    new_version = stack.checkout / "models" / "group" / str(committed + 1)
    assert (new_version / "manifest.json").is_file(), run.stdout
    assert {path.stat().st_uid for path in [new_version, *new_version.rglob("*")]} == {USER_ID}
    records = list((stack.checkout / "runs").glob("train-*/training_summary.json"))
    assert len(records) == 1 and records[0].stat().st_uid == USER_ID

    group = _wait_for_version(stack, "group", committed + 1)
    states = {entry["version"]: entry for entry in group["versions"]}
    assert states[committed + 1]["state"] == "candidate", group
    assert "held back by the promotion gate" in states[committed + 1]["reason"]
    assert group["served_version"] == committed
    assert predict_the_example_seven(stack.url)["model_version"] == committed


def _wait_for_version(stack: Stack, variant: str, version: int, timeout_s: float = 120) -> dict:
    """The listing once `version` is listed and loaded (each worker loads it on its own, and
    a listing answered by one still loading it says "loading")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listing = models_listing(stack)[variant]
        states = {entry["version"]: entry["state"] for entry in listing["versions"]}
        if states.get(version, "loading") != "loading":
            return listing
        time.sleep(0.5)
    raise AssertionError(
        f"GET /models did not list {variant} version {version} loaded in {timeout_s} s"
    )


def test_stop_answers_every_request_in_flight_within_the_grace_period(stack: Stack):
    """Uploads half sent when `docker compose stop` begins are finished after the signal (the
    service's readiness has turned), and every one is answered before the grace runs out."""
    picture = (EXAMPLES / "number-2024.jpg").read_bytes()
    uploads = [_start_upload(stack.http_port, picture) for _ in range(8)]
    started = time.monotonic()
    stop = stack.engine.compose_in_background(stack.checkout, "stop", "api", **stack.variables)
    _wait_until_draining(stack, timeout_s=_grace_s())
    with ThreadPoolExecutor(len(uploads)) as pool:
        answers = list(pool.map(lambda upload: _finish_upload(upload, picture), uploads))
    output = stop.communicate(timeout=_grace_s() + 30)[0]
    stopped_in = time.monotonic() - started
    assert stop.returncode == 0, output
    assert [status for status, _ in answers] == [200] * len(uploads), answers
    assert all(json.loads(body)["readings"][0]["number"] == "2024" for _, body in answers)
    assert stopped_in < _grace_s(), f"stop took {stopped_in:.1f} s"
    # Exited by itself after draining, not killed at the end of the grace (137).
    assert stack.inspect("{{.State.ExitCode}}") == "0"


def _start_upload(port: int, picture: bytes) -> socket.socket:
    """A /read request with its headers and half its body sent."""
    head = (
        "POST /read?variant=group HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(picture)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    connection.sendall(head + picture[: len(picture) // 2])
    return connection


def _finish_upload(connection: socket.socket, picture: bytes) -> tuple[int, bytes]:
    with connection:
        connection.sendall(picture[len(picture) // 2 :])
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _wait_until_draining(stack: Stack, timeout_s: float) -> None:
    """Until readiness stops answering 200: the signal has reached the service."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.url}/health/ready", timeout=2).status_code != 200:
                return
        except httpx.HTTPError:
            return
        time.sleep(0.05)
    raise AssertionError(f"readiness still 200 {timeout_s} s after `stop` began")


def test_down_leaves_nothing_behind(stack: Stack):
    project = stack.variables["COMPOSE_PROJECT_NAME"]
    stack.compose("down", "--remove-orphans")
    label = f"label=com.docker.compose.project={project}"
    assert stack.engine.run("ps", "-a", "-q", "--filter", label).stdout.strip() == ""
    networks = stack.engine.run("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [name for name in networks if name.startswith(project)]
