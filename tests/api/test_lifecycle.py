"""Model lifecycle: new versions go live while serving, bad ones are refused with their reason,
version policies and pinning, the model-repository endpoints and their admin token.

Each test serves copies of the committed group (and layer) model from a temporary models
directory, adding versions the way `training/export.py` does: written under a hidden staging
name, then renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from devtools.committed import committed_models
from devtools.servers import Server
from mnist_shared.preprocessing import scale_pixels
from service.app import create_app
from service.runtime.model_loading import LoadFailed, load_version, smoke_check
from service.settings import Settings

COMMITTED = committed_models()
SERVED_VERSION = 3  # the committed models' version
POLL_S = 0.2


def add_version(
    models: Path,
    version: int,
    variant: str = "group",
    onnx: Callable[[bytes], bytes] | None = None,
    rehash: bool = False,
    copy_of: str | None = None,
) -> Path:
    """A copy of the committed model as `version`, renamed into place complete. `onnx` changes
    the ONNX bytes (a corruption); `rehash` then records their sha256 in the manifest."""
    source = COMMITTED / (copy_of or variant) / str(SERVED_VERSION)
    staging = models / variant / f".staging-{version}-test"
    staging.mkdir(parents=True)
    data = (source / "model.onnx").read_bytes()
    data = onnx(data) if onnx else data
    (staging / "model.onnx").write_bytes(data)
    for twin in source.glob("model.*.onnx"):  # the reduced-precision twins, as they are
        shutil.copy(twin, staging)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["version"] = version
    if rehash:
        manifest["files"]["model.onnx"] = hashlib.sha256(data).hexdigest()
    (staging / "manifest.json").write_text(json.dumps(manifest))
    final = models / variant / str(version)
    staging.rename(final)
    return final


def flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    add_version(tmp_path, SERVED_VERSION)
    return tmp_path


def serve(models: Path, headers: dict[str, str] | None = None, **settings: object) -> TestClient:
    values = {"models_dir": models, "model_poll_s": POLL_S, **settings}
    return TestClient(create_app(Settings(**values)), headers=headers)  # type: ignore[arg-type]


# The test client is not on loopback: the repository endpoints need the token (test_admin_safety).
ADMIN_TOKEN = "s3cret"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def digit_png(mnist) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mnist.test_images[0]).save(buffer, "PNG")
    return buffer.getvalue()


def predict(client: TestClient | httpx.Client, png: bytes, **params: object) -> httpx.Response:
    return client.post(
        "/predict", params=params, content=png, headers={"content-type": "image/png"}
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def states(client: TestClient, variant: str = "group") -> dict[int, dict]:
    entry = next(m for m in client.get("/models").json()["models"] if m["variant"] == variant)
    return {row["version"]: row for row in entry["versions"]}


def ready(client: TestClient) -> bool:
    return client.get("/health/ready").status_code == 200


def test_a_new_version_goes_live_under_load_with_no_failed_request(models, digit_png):
    server = Server(models, {"MNIST_MODEL_POLL_S": str(POLL_S), "MNIST_VARIANTS": "group"})
    stop, results, readiness = threading.Event(), [], []

    def post_continuously() -> None:
        seen = []
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                response = predict(client, digit_png)
                seen.append((response.status_code, response.json().get("model_version")))
        results.append(seen)

    def probe_readiness() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                readiness.append(client.get("/health/ready").status_code)
                time.sleep(0.01)

    try:
        server.wait_loaded()
        threads = [threading.Thread(target=post_continuously) for _ in range(4)]
        threads.append(threading.Thread(target=probe_readiness))
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        add_version(models, 4)
        wait_for(
            lambda: httpx.get(f"{server.url}/models").json()["models"][0]["served_version"] == 4
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        server.stop()
    answers = [answer for seen in results for answer in seen]
    assert {status for status, _ in answers} == {200}
    assert set(readiness) == {200}
    for seen in results:  # each client's later requests all answered by the new version
        versions = [version for _, version in seen]
        assert versions[0] == SERVED_VERSION and versions[-1] == 4
        assert versions == sorted(versions)


def test_an_export_is_invisible_until_renamed_into_place(models, digit_png):
    staging = models / "group" / ".staging-4-abc"
    staging.mkdir()
    shutil.copy(COMMITTED / "group" / "3" / "manifest.json", staging)  # half written
    with serve(models) as client:
        wait_for(lambda: ready(client))
        time.sleep(3 * POLL_S)
        assert list(states(client)) == [SERVED_VERSION]
        assert predict(client, digit_png).json()["model_version"] == SERVED_VERSION


def test_a_corrupt_version_is_refused_once_and_the_old_one_keeps_serving(models, digit_png):
    with serve(models) as client:
        wait_for(lambda: ready(client))
        add_version(models, 4, onnx=flip_a_byte)
        wait_for(lambda: states(client).get(4, {}).get("state") == "failed")
        row = states(client)[4]
        assert row["reason"].startswith("sha256 of model.onnx (")
        assert "does not match the manifest" in row["reason"]
        assert states(client)[SERVED_VERSION]["state"] == "serving"
        time.sleep(4 * POLL_S)  # more polls: not retried, not counted again
        assert _load_failures(client) == 1.0
        response = predict(client, digit_png)
        assert response.status_code == 200 and response.json()["model_version"] == SERVED_VERSION
        assert ready(client)
        # Fixed files are tried again at the next poll.
        shutil.copy(COMMITTED / "group" / "3" / "model.onnx", models / "group" / "4")
        wait_for(lambda: states(client)[4]["state"] == "serving")
        assert predict(client, digit_png).json()["model_version"] == 4


def test_an_onnx_file_that_does_not_load_is_refused_with_the_reason(models):
    with serve(models) as client:
        wait_for(lambda: ready(client))
        add_version(models, 4, onnx=lambda data: b"not a model", rehash=True)
        wait_for(lambda: states(client).get(4, {}).get("state") == "failed")
        assert "model.onnx does not load in onnxruntime" in states(client)[4]["reason"]


def test_latest_2_keeps_both_versions_pinnable(models, digit_png):
    add_version(models, 4)
    with serve(models, version_policy="latest:2") as client:
        wait_for(lambda: ready(client))
        assert predict(client, digit_png).json()["model_version"] == 4
        assert predict(client, digit_png, version=3).json()["model_version"] == 3
        missing = predict(client, digit_png, version=9)
        assert missing.status_code == 404
        assert missing.json() == {
            "error": "version 9 of model 'group' is not loaded; loaded: 3, 4. Ask for one of "
            "those, or none for the default."
        }
        add_version(models, 5)  # latest:2 now means 4 and 5; 3 is retired
        wait_for(lambda: states(client)[3]["state"] == "available")
        assert {v: row["state"] for v, row in states(client).items()} == {
            3: "available",
            4: "serving",
            5: "serving",
        }
        assert predict(client, digit_png, version=3).status_code == 404


def test_a_specific_policy_serves_exactly_those_versions(models, digit_png):
    add_version(models, 4)
    with serve(models, version_policy="specific:3") as client:
        wait_for(lambda: ready(client))
        assert predict(client, digit_png).json()["model_version"] == 3
        assert states(client)[4]["state"] == "available"


def test_polling_off_changes_nothing_until_load_is_called(models, digit_png):
    with serve(models, model_poll_s=0, admin_token=ADMIN_TOKEN) as client:
        wait_for(lambda: ready(client))
        add_version(models, 4)
        time.sleep(0.5)
        assert predict(client, digit_png).json()["model_version"] == SERVED_VERSION
        response = client.post("/v2/repository/models/group/load", headers=ADMIN)
        # The default before stays loaded beside it: measured on the gate sample, and a
        # rollback serves at once.
        assert response.status_code == 200
        assert response.json() == {"name": "group", "versions": [3, 4]}
        assert predict(client, digit_png).json()["model_version"] == 4


def test_repository_index_load_and_unload(models, digit_png):
    add_version(models, SERVED_VERSION, variant="layer")
    with serve(models, model_poll_s=0, admin_token=ADMIN_TOKEN, headers=ADMIN) as client:
        wait_for(lambda: ready(client))
        assert client.post("/v2/repository/index").json() == [
            {"name": "group", "version": 3, "state": "serving"},
            {"name": "layer", "version": 3, "state": "serving"},
        ]
        assert client.post("/v2/repository/models/layer/unload").status_code == 200
        refused = predict(client, digit_png, variant="layer")
        assert refused.status_code == 503
        assert refused.json() == {
            "error": "model 'layer' is unloaded; load it with "
            "POST /v2/repository/models/layer/load."
        }
        assert ready(client)  # readiness covers the variants still meant to be served
        assert predict(client, digit_png, variant="all").json()["results"].keys() == {"group"}
        assert client.post("/v2/repository/models/layer/load").status_code == 200
        assert predict(client, digit_png, variant="layer").status_code == 200
        add_version(models, 4, variant="layer", onnx=flip_a_byte)
        failed = client.post("/v2/repository/models/layer/load")
        assert failed.status_code == 400
        assert failed.json()["error"].startswith(
            "version 4 of 'layer' is not served: sha256 of model.onnx ("
        )
        assert predict(client, digit_png, variant="layer").json()["model_version"] == 3
        unknown = client.post("/v2/repository/models/nope/load")
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "unknown model 'nope': served models are group, layer."}


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        (None, 401, "requires the header Authorization: Bearer <MNIST_ADMIN_TOKEN>"),
        ("Bearer wrong", 403, "does not match MNIST_ADMIN_TOKEN"),
        ("Basic s3cret", 401, "requires the header Authorization: Bearer"),
        ("Bearer s3cret", 200, None),
    ],
    ids=["missing", "wrong", "not_bearer", "right"],
)
def test_the_admin_token_guards_the_repository(models, header, status, message):
    with serve(models, admin_token="s3cret", model_poll_s=0) as client:
        headers = {"authorization": header} if header else {}
        response = client.post("/v2/repository/index", headers=headers)
        assert response.status_code == status
        if message:
            assert message in response.json()["error"]
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/models").status_code == 200  # nothing else needs the token


def _load_failures(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('mnist_model_load_failures_total{variant="group"}'):
            return float(line.split()[-1])
    return 0.0


class FakeBackend:
    name, precision, scores_digits = "fake", "fp32", False

    def __init__(self, output, output_lone=None) -> None:
        self.output = output
        self.output_lone = output_lone or output

    def predict(self, images):
        return self.output(images)

    def predict_lone(self, images):
        return self.output_lone(images)


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (lambda x: np.full((len(x), 10), np.nan), "not all finite"),
        (lambda x: np.full((len(x), 9), 1 / 9), "output shape (4, 9), expected (4, 10)"),
        (lambda x: np.full((len(x), 10), 0.5), "rows are not probability distributions"),
        (lambda x: 1 / 0, "inference raised ZeroDivisionError: division by zero"),
    ],
    ids=["nan", "shape", "not_summing_to_1", "raises"],
)
def test_the_smoke_check_refuses_a_model_that_answers_nonsense(output, reason):
    with pytest.raises(LoadFailed, match=re.escape(reason)):
        smoke_check(FakeBackend(output))
    smoke_check(FakeBackend(lambda x: np.full((len(x), 10), 0.1, np.float32)))  # a sane one


def test_the_smoke_check_refuses_a_lone_request_session_that_disagrees():
    uniform = lambda x: np.full((len(x), 10), 0.1, np.float32)  # noqa: E731
    skewed = lambda x: np.eye(10, dtype=np.float32)[: len(x)]  # noqa: E731
    with pytest.raises(LoadFailed, match="lone-request session disagrees with the batch one"):
        smoke_check(FakeBackend(uniform, skewed))


@pytest.mark.parametrize("lone_session_threads", [1, 2])
def test_the_lone_request_session_answers_as_the_batch_one(mnist, lone_session_threads):
    version_dir = sorted((COMMITTED / "group").iterdir())[-1]
    _, backends = load_version(version_dir, threads=1, lone_session_threads=lone_session_threads)
    images = scale_pixels(mnist.test_images[:4])
    for backend in backends:  # each precision's
        for image in images:
            np.testing.assert_allclose(
                backend.predict_lone(image[None]), backend.predict(image[None]), atol=1e-6
            )
        assert (backend._lone_session is backend._session) == (lone_session_threads == 1)


def test_a_broken_new_variant_neither_drops_readiness_nor_becomes_the_default(models, digit_png):
    with serve(models) as client:
        wait_for(lambda: ready(client))
        add_version(models, 1, variant="aaa", onnx=flip_a_byte, copy_of="group")  # before "group"
        wait_for(lambda: "aaa" in {m["variant"] for m in client.get("/models").json()["models"]})
        time.sleep(2 * POLL_S)
        assert states(client, "aaa")[1]["state"] == "failed"
        assert ready(client)
        assert predict(client, digit_png).json()["variant"] == "group"


def test_unload_is_refused_with_several_workers(models):
    with serve(models, workers=2, model_poll_s=0, admin_token=ADMIN_TOKEN) as client:
        wait_for(lambda: ready(client))
        response = client.post("/v2/repository/models/group/unload", headers=ADMIN)
        assert response.status_code == 409
        assert "run with MNIST_WORKERS=1" in response.json()["error"]
        assert ready(client)


def test_a_version_that_only_looks_like_a_number_is_a_400(models, digit_png):
    with serve(models, model_poll_s=0) as client:
        wait_for(lambda: ready(client))
        response = predict(client, digit_png, version="²")
        assert response.status_code == 400
        assert "is not a number" in response.json()["error"]
