"""Shared fixtures. The MNIST copy is found through MNIST_DATA_DIR (set by `make test` and CI)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Apps built by tests serve no gRPC unless a test asks for it (tests/system/test_v2_protocol.py).
os.environ.setdefault("MNIST_GRPC_PORT", "0")
# Servers started by tests run one worker unless a test asks for more (tests/system/test_workers.py).
os.environ.setdefault("MNIST_WORKERS", "1")

from devtools import REPO_ROOT  # noqa: F401 (tests import it from here)
from devtools.committed import committed_models


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    value = os.environ.get("MNIST_DATA_DIR")
    if not value:
        pytest.skip("MNIST_DATA_DIR is not set; point it at a directory of MNIST IDX files")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"MNIST_DATA_DIR={value} is not a directory")
    return path


@pytest.fixture(scope="module")
def threshold(client) -> float:
    """The digit check's threshold as the module's own `client` serves it."""
    return client.get("/models").json()["digit_check"]["threshold"]


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    from training.data import load_idx_directory

    return load_idx_directory(mnist_dir)


@pytest.fixture(scope="session")
def server():
    """`python -m service` on the committed models, on free ports (HTTP and gRPC), for the
    tests that need a real socket: browsers, stock protocol clients, curl."""
    from devtools.servers import Server

    running = Server(committed_models())
    try:
        running.wait_loaded()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def app_client():
    """Builds the app on the committed models with the settings given, in process (a
    TestClient) and ready; every client built is closed at the end of the module.
    `raises=False`: a server-side fault is answered 500 as a real client would see it, not
    raised in the test (for the tests that assert no input gets one)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with contextlib.ExitStack() as clients:

        def build(*, raises: bool = True, **settings: object) -> TestClient:
            values = {"models_dir": committed_models(), **settings}
            app = create_app(Settings(**values))  # type: ignore[arg-type]
            client = clients.enter_context(TestClient(app, raise_server_exceptions=raises))
            wait_ready(client)
            return client

        yield build


@pytest.fixture(scope="module")
def answering_client(app_client):
    """The app on the committed models answering a server-side fault with its 500."""
    return app_client(raises=False, model_poll_s=0)


def wait_ready(client, timeout_s: float = 60) -> None:
    """Until an in-process app (a TestClient) answers /health/ready with 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(client.get("/health/ready").json())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`item.rep_call`), so fixtures can see a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
