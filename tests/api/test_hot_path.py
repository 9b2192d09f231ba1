"""The request path stays on the event loop: no thread hop except to decode a large body.

Every hop to Starlette's thread pool (a plain `def` dependency or route, a sync context manager)
goes through `anyio.to_thread.run_sync`, our decoding's through
`decode_work.in_stoppable_thread`; each costs a context switch per request on a 2-core box.
"""

from __future__ import annotations

import base64
import io

import anyio.to_thread
import numpy as np
import pytest
from fastapi import APIRouter, Depends
from PIL import Image

from service.dataplane import decode_work
from service.dataplane.dataplane import DataPlane
from service.rest.front_door import inference_routes
from service.rest.routes import predict
from service.rest.routes import router as rest_router
from service.rest.v2 import router as v2_router


@pytest.fixture(scope="module")
def client(app_client):
    return app_client(max_upload_bytes=8 * 1024 * 1024)


@pytest.fixture
def hops(monkeypatch):
    """The names of the work handed from the event loop to a thread."""
    calls: list[str] = []

    def counted(original):
        async def counting(work, *args, **kwargs):
            calls.append(getattr(work, "__name__", repr(work)))
            return await original(work, *args, **kwargs)

        return counting

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted(anyio.to_thread.run_sync))
    monkeypatch.setattr(
        decode_work, "in_stoppable_thread", counted(decode_work.in_stoppable_thread)
    )
    return calls


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_small_requests_never_leave_the_event_loop(client, mnist, hops):
    digit = mnist.test_images[0]
    responses = [
        client.post("/predict", content=_png(digit), headers={"content-type": "image/png"}),
        client.post("/predict", files=[("file", ("d.png", _png(digit), "image/png"))]),
        client.post("/predict", params={"variant": "all"}, json={"pixels": [digit.tolist()]}),
        client.post(
            "/v2/models/group/infer",
            json={
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, 28, 28],
                        "datatype": "FP32",
                        "data": (digit / 255).ravel().tolist(),
                    }
                ]
            },
        ),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert hops == []


def test_a_large_body_is_decoded_in_one_worker_thread(client, hops):
    noise = np.random.default_rng(0).integers(0, 256, (700, 700), dtype=np.uint8)
    noise[200:500, 330:370] = 0  # a dark stroke on noisy paper
    body = _png(noise)
    assert len(body) > 256 * 1024
    response = client.post("/predict", content=body, headers={"content-type": "image/png"})
    assert response.status_code in (200, 422), response.text
    assert hops == ["_open_and_decode_first"]


def test_answers_match_the_documented_schemas(client, mnist):
    """The route writes JSON itself (orjson, no response-model pass): it must still be what
    the OpenAPI schema promises."""
    from service.rest import schemas

    body = {"pixels": [mnist.test_images[0].tolist()]}
    one = client.post("/predict", params={"return_input": "true"}, json=body).json()
    schemas.VariantPredictions.model_validate(one, strict=True)
    assert set(one["predictions"][0]) == {
        "digit",
        "confidence",
        "probabilities",
        "input",
        "looks_like_digit",
        "digit_score",
    }
    every = client.post("/predict", params={"variant": "all"}, json=body).json()
    schemas.AllVariantsPredictions.model_validate(every, strict=True)
    assert set(every["results"]) == {"group", "instance", "layer"}


def _routed_paths(client, monkeypatch) -> list[str]:
    """The paths FastAPI's router is called with from now on (the front door's are not)."""
    router_type = type(client.app.router)
    original = router_type.__call__
    routed: list[str] = []

    async def counting(self, scope, receive, send):
        routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(router_type, "__call__", counting)
    return routed


def test_predict_is_served_by_the_front_door_without_fastapis_router(client, mnist, monkeypatch):
    routed = _routed_paths(client, monkeypatch)
    digit = _png(mnist.test_images[0])
    answer = client.post("/predict", content=digit, headers={"content-type": "image/png"})
    refused = client.post(
        "/predict?variant=nope", content=digit, headers={"content-type": "image/png"}
    )
    assert answer.status_code == 200 and answer.json()["predictions"][0]["digit"] == 7
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "unknown variant 'nope': choose one of group, instance, layer, all."
    }
    assert client.get("/models").status_code == 200
    assert routed == ["/models"]


def test_read_and_v2_infer_are_served_by_the_front_door_too(client, mnist, monkeypatch):
    """`/read` and `/v2/models/{model}[/versions/{version}]/infer`: the path's parameters and
    the data plane given as FastAPI would give them, its errors in the app's format."""
    routed = _routed_paths(client, monkeypatch)
    digit = _png(mnist.test_images[0])
    read = client.post("/read", content=digit, headers={"content-type": "image/png"})
    assert read.status_code == 200 and read.json()["readings"][0]["number"] == "7"
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [1]}
    tensor["data"] = [base64.b64encode(digit).decode()]
    latest = client.post("/v2/models/layer/infer", json={"inputs": [tensor]})
    assert latest.status_code == 200 and latest.json()["model_name"] == "layer"
    assert latest.json()["outputs"][1]["data"] == [7]
    pinned = client.post("/v2/models/group/versions/3/infer", json={"inputs": [tensor]})
    assert pinned.status_code == 200 and pinned.json()["model_version"] == "3"
    unknown = client.post("/v2/models/nope/infer", json={"inputs": [tensor]})
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    bad_version = client.post("/v2/models/group/versions/x/infer", json={"inputs": [tensor]})
    assert bad_version.status_code == 400 and "version" in bad_version.json()["error"]
    assert routed == []


def test_a_bug_behind_the_front_door_answers_500_json_and_is_logged(
    client, mnist, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("service.dataplane.dataplane.scale_pixels", broken)
    digit = _png(mnist.test_images[0])
    with caplog.at_level("ERROR", logger="service.rest.front_door"):
        response = client.post("/predict", content=digit, headers={"content-type": "image/png"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal error (logged); retry, and report it if it persists."
    }
    assert "unhandled error on POST /predict" in caplog.text
    assert "ZeroDivisionError: a bug" in caplog.text


def test_each_inference_route_calls_the_data_plane_once(client, mnist, monkeypatch):
    """`/predict` and `/v2/.../infer` parse their wire format and make one call: choosing,
    reading, admitting, decoding and inferring are the data plane's."""
    calls: list[str | None] = []
    infer = DataPlane.infer

    async def counting(self, request):
        calls.append(request.name)
        return await infer(self, request)

    monkeypatch.setattr(DataPlane, "infer", counting)
    digit = _png(mnist.test_images[0])
    assert client.post("/predict?variant=all", files={"file": digit}).status_code == 200
    tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [1]}
    tensor["data"] = [base64.b64encode(digit).decode()]
    answer = client.post("/v2/models/layer/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200 and answer.json()["outputs"][1]["data"] == [7]
    assert calls == ["all", "layer"]


def test_the_front_door_refuses_a_dependency_it_would_never_solve():
    """The front door serves `/predict` without FastAPI's dependency solving (the data plane's
    aside): another dependency declared on that route would silently do nothing, so the app
    refuses to build."""
    router = APIRouter()
    router.add_api_route(
        "/predict", predict, methods=["POST"], dependencies=[Depends(lambda: None)]
    )
    with pytest.raises(RuntimeError, match="solves no FastAPI dependency but the data plane"):
        inference_routes(router.routes)


def test_the_shed_check_reads_the_inference_routes_from_the_routers():
    """A new inference route is shed at the door as soon as its endpoint is listed in
    INFERENCE_ENDPOINTS: the paths come from the routes FastAPI serves, not a copy."""
    found = inference_routes([*rest_router.routes, *v2_router.routes])
    assert [(regex.pattern, endpoint.__name__) for regex, endpoint in found] == [
        ("^/predict$", "predict"),
        ("^/v2/models/(?P<model>[^/]+)/versions/(?P<version>[^/]+)/infer$", "model_infer"),
        ("^/v2/models/(?P<model>[^/]+)/infer$", "model_infer"),
    ]
