"""FastAPI's native OpenTelemetry: off unless MNIST_OPENTELEMETRY turns it on (FastAPI would
otherwise look for configured providers on every request)."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from devtools.committed import committed_models
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the process's global provider, as an operator sets it
    return exporter


@pytest.mark.parametrize("enabled", [False, True])
def test_predict_is_traced_only_when_opentelemetry_is_on(spans, enabled):
    buffer = io.BytesIO()
    Image.new("L", (28, 28)).save(buffer, "PNG")  # blank: a 422, traced like any answer
    settings = Settings(models_dir=committed_models(), grpc_port=0, opentelemetry=enabled)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        spans.clear()
        response = client.post(
            "/predict", content=buffer.getvalue(), headers={"content-type": "image/png"}
        )
    assert response.status_code == 422
    traced = [span.attributes for span in spans.get_finished_spans()]
    if not enabled:
        assert traced == []
        return
    assert len(traced) == 1
    assert traced[0]["url.path"] == "/predict"
    assert traced[0]["http.request.method"] == "POST"
    assert traced[0]["http.response.status_code"] == 422
