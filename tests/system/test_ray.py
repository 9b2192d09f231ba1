"""Ray Serve on a local cluster: deploy/ray/serve_config.yaml deployed as a user does, requests
through Ray's proxy, two replicas, and recovery after one replica's process is killed.

Ray runs from its own virtualenv (`make test` builds `.venv-ray` with `pip install -e '.[ray]'`,
as a user installs it) named by MNIST_RAY_VENV; the cluster is stopped at the end, also when the
test fails.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from devtools import REPO_ROOT
from devtools.servers import free_port

CONFIG = REPO_ROOT / "deploy" / "ray" / "serve_config.yaml"
# Lists the application's replicas as JSON: [{"pid": ..., "state": ...}], from the cluster.
REPLICAS = """
import json, ray
from ray.util.state import list_actors
ray.init(address="auto", logging_level="ERROR")
actors = list_actors(filters=[("class_name", "=", "ServeReplica:mnist:MnistService")], limit=100)
print(json.dumps([{"pid": a.pid, "state": a.state} for a in actors]))
"""


@pytest.fixture(scope="module")
def ray_bin() -> Path:
    venv = os.environ.get("MNIST_RAY_VENV")
    if not venv:
        pytest.skip("MNIST_RAY_VENV is not set: `make test` builds .venv-ray and sets it")
    path = Path(venv).resolve() / "bin"
    assert (path / "serve").is_file(), f"{path}/serve missing: pip install -e '.[ray]' there"
    return path


@pytest.fixture(scope="module")
def cluster(ray_bin: Path) -> Iterator[dict]:
    """`ray start --head` on free ports, the config deployed with `serve deploy`; `ray stop`."""
    # A short directory: Ray's Unix sockets live under it (at most 107 characters a path).
    tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    ports = {name: free_port() for name in ("gcs", "dashboard", "serve")}
    env = {
        **os.environ,
        "RAY_ADDRESS": f"127.0.0.1:{ports['gcs']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{ray_bin}:{os.environ['PATH']}",
    }
    config = yaml.safe_load(CONFIG.read_text())
    config["http_options"] |= {"host": "127.0.0.1", "port": ports["serve"]}
    (tmp / "serve_config.yaml").write_text(yaml.safe_dump(config))
    run = lambda *args: subprocess.run(  # noqa: E731
        args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    started = run(
        "ray", "start", "--head", f"--port={ports['gcs']}", f"--dashboard-port={ports['dashboard']}",
        "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats",
        f"--temp-dir={tmp / 'session'}",
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        dashboard = f"http://127.0.0.1:{ports['dashboard']}"
        deployed = run("serve", "deploy", str(tmp / "serve_config.yaml"), "--address", dashboard)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        url = f"http://127.0.0.1:{ports['serve']}"
        _wait(lambda: _ready(url), 240, "the application to answer through Ray's proxy")
        yield {"url": url, "run": run, "bin": ray_bin}
    finally:
        run("ray", "stop", "--force")
        shutil.rmtree(tmp, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _replicas(cluster: dict) -> list[dict]:
    done = cluster["run"](str(cluster["bin"] / "python"), "-c", REPLICAS)
    assert done.returncode == 0, done.stderr
    return [r for r in json.loads(done.stdout.strip().splitlines()[-1]) if r["state"] == "ALIVE"]


def _predict(url: str, mnist, count: int = 8) -> list[int]:
    files = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(mnist.test_images[index]).save(buffer, "PNG")
        files.append(("file", (f"{index}.png", buffer.getvalue(), "image/png")))
    response = httpx.post(f"{url}/predict", params={"variant": "group"}, files=files, timeout=30)
    assert response.status_code == 200, response.text
    return [p["digit"] for p in response.json()["predictions"]]


def test_requests_through_rays_proxy_are_answered(cluster, mnist):
    expected = [int(label) for label in mnist.test_labels[:8]]
    assert _predict(cluster["url"], mnist) == expected
    models = httpx.get(f"{cluster['url']}/models", timeout=10).json()["models"]
    assert {m["variant"] for m in models} == {"group", "instance", "layer"}
    assert httpx.get(f"{cluster['url']}/metrics", timeout=10).text.count("mnist_requests") > 0


def test_the_application_runs_two_replicas_and_recovers_from_a_killed_one(cluster, mnist):
    _wait(lambda: len(_replicas(cluster)) == 2, 120, "two replicas")
    victim = _replicas(cluster)[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    _wait(
        lambda: len(alive := _replicas(cluster)) == 2 and victim not in {r["pid"] for r in alive},
        180,
        "Ray to replace the killed replica",
    )
    _wait(lambda: _ready(cluster["url"]), 120, "readiness through the proxy")
    expected = [int(label) for label in mnist.test_labels[:8]]
    for _ in range(6):  # spread over both replicas by Ray's router
        assert _predict(cluster["url"], mnist) == expected
