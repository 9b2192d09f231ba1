"""The small things a team trips over when it deploys: ports, health probes, workers under
the v1 compose client, training without its extra, curl-friendly answers."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys

import pytest
import yaml

from devtools.committed import committed_models
from tests.conftest import REPO_ROOT, wait_ready


@pytest.fixture(scope="module")
def app_client():
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with TestClient(create_app(Settings(models_dir=committed_models()))) as client:
        wait_ready(client)
        yield client


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_workers_do_not_depend_on_limits_the_v1_client_ignores():
    api = _compose()["services"]["api"]
    workers = re.fullmatch(r"\$\{MNIST_WORKERS:-(\d+)\}", api["environment"]["MNIST_WORKERS"])
    assert workers and int(workers.group(1)) == int(
        float(api["deploy"]["resources"]["limits"]["cpus"])
    )


def test_the_scale_out_command_s_port_ranges_do_not_overlap():
    deployment = (REPO_ROOT / "docs" / "deployment.md").read_text()
    http, grpc = re.search(
        r"MNIST_PUBLISH_PORTS=(\d+-\d+) MNIST_PUBLISH_GRPC_PORTS=(\d+-\d+)", deployment
    ).groups()
    ranges = [range(int(a), int(b) + 1) for a, b in (r.split("-") for r in (http, grpc))]
    assert not set(ranges[0]) & set(ranges[1])


def test_a_busy_grpc_port_says_how_to_move_or_turn_it_off():
    """In a subprocess: the service's gRPC stubs and tritonclient's (other test modules) register
    the same protocol names, and one process holds only one of them."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = (
            "from service.grpc.server import GrpcServer; "
            f"GrpcServer(None, '127.0.0.1', {taken.getsockname()[1]}, 1024)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT
        )
    assert result.returncode != 0
    assert "Set MNIST_GRPC_PORT to a free port, or to 0 to turn gRPC off" in result.stderr


def test_training_without_its_extra_says_what_to_install(monkeypatch, capsys):
    from training import train

    monkeypatch.setattr(train, "find_spec", lambda name: None if name == "keras" else object())
    assert train.main(["--variant", "group"]) == 2
    assert "pip install -e '.[train]'" in capsys.readouterr().err


def test_training_stops_before_it_starts_where_it_could_not_write_its_results(
    monkeypatch, capsys, tmp_path
):
    """As the Compose trainer did, as uid 1000, on a runs/ that only root could create."""
    from training import train

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert train.main(["--variant", "group", "--output-dir", str(tmp_path / "models")]) == 2
    error = capsys.readouterr().err
    assert f"uid {os.getuid()} may not write in {tmp_path}" in error
    assert "MNIST_UID:MNIST_GID" in error and "--runs-dir" in error
    assert not (tmp_path / "models").exists()


def test_a_runs_dir_under_a_file_is_named_before_training(tmp_path):
    from training.run_record import unwritable

    (tmp_path / "runs").write_text("not a directory")
    problem = unwritable([tmp_path, tmp_path / "runs" / "more"])
    assert (
        problem == f"{tmp_path / 'runs' / 'more'}: {tmp_path / 'runs'} is a file, not a directory"
    )


def test_json_answers_end_with_a_newline_and_data_urls_are_images(app_client, mnist):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(255 - mnist.test_images[0]).resize((112, 112)).save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    response = app_client.post("/predict", json={"images": [url]})
    assert response.status_code == 200, response.text
    assert response.content.endswith(b"}\n")
    assert response.json()["predictions"][0]["digit"] == mnist.test_labels[0]
