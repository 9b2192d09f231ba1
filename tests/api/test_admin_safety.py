"""What a web page, a DNS-rebound name or another machine can do to the service: the
model-repository endpoints refuse them (token or not), readiness reports an unloaded default
variant, and every answer carries the browser security headers (the page a strict CSP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devtools.committed import committed_models
from service.app import create_app
from service.rest.pages import PAGE_CSP, STATIC_DIR
from service.settings import Settings
from tests.conftest import REPO_ROOT, wait_ready

UNLOAD = "/v2/repository/models/group/unload"
TOKEN = "s3cret"
LOOPBACK = {"client": ("127.0.0.1", 50000), "base_url": "http://127.0.0.1:8000"}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def app(load_models: bool = False, **settings: object):
    values = {"models_dir": committed_models(), "model_poll_s": 0, **settings}
    return create_app(Settings(**values), load_models=load_models)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def with_token() -> Iterator[TestClient]:
    """A token is set, the right one is sent; nothing is loaded (refusals come first)."""
    headers = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(app(admin_token=TOKEN), headers=headers) as client:
        yield client


@pytest.mark.parametrize(
    ("client", "base_url"),
    [
        (("testclient", 50000), "http://testserver"),
        (("192.168.1.5", 50000), "http://127.0.0.1:8000"),  # another machine
        (("172.17.0.1", 50000), "http://localhost:8000"),  # the host, into a container
        (("127.0.0.1", 50000), "http://rebound.example:8000"),  # DNS rebinding
    ],
    ids=["testclient", "lan", "docker_bridge", "rebound_name"],
)
def test_without_a_token_only_this_machine_may_unload(client, base_url):
    with TestClient(app(), client=client, base_url=base_url) as remote:
        response = remote.post(UNLOAD)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error.startswith("MNIST_ADMIN_TOKEN is unset, so the model-repository endpoints")
    assert f"(this one: from {client[0]} to {base_url.split('//')[1]})" in error
    assert "set MNIST_ADMIN_TOKEN on the service and send Authorization: Bearer <token>" in error


@pytest.mark.parametrize(
    ("client", "base_url"),
    [
        (("127.0.0.1", 50000), "http://127.0.0.1:8000"),
        (("127.0.0.1", 50000), "http://localhost:8000"),
        (("::1", 50000), "http://[::1]:8000"),
    ],
    ids=["ipv4", "localhost", "ipv6"],
)
def test_without_a_token_this_machine_may_use_the_repository(client, base_url):
    with TestClient(app(), client=client, base_url=base_url) as local:
        response = local.post("/v2/repository/index")
    assert response.status_code == 200
    assert {row["name"] for row in response.json()} == {"group", "instance", "layer"}


def test_unloading_the_default_variant_takes_readiness_down_until_it_is_loaded():
    with TestClient(app(load_models=True, variants="group,layer"), **LOOPBACK) as local:
        wait_ready(local)
        unloaded = local.post(UNLOAD)
        assert unloaded.status_code == 200
        assert unloaded.json() == {"name": "group", "versions": []}
        for path in ("/health/ready", "/v2/health/ready"):
            assert local.get(path).status_code == 503
        state = local.get("/health/ready").json()
        assert state["ready"] is False
        assert state["errors"] == {
            "group": "model 'group' is unloaded; load it with POST "
            "/v2/repository/models/group/load. It is the default variant: requests naming "
            "none get 503."
        }
        png = (REPO_ROOT / "examples" / "mnist-2.png").read_bytes()
        predict = {"content": png, "headers": {"content-type": "image/png"}}
        assert local.post("/predict", **predict).status_code == 503
        assert local.post("/predict?variant=layer", **predict).status_code == 200
        assert local.post("/v2/repository/models/group/load").status_code == 200
        assert local.get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"origin": "http://evil.example"}, "(Origin: http://evil.example; this service: http://"),
        ({"origin": "null"}, "(Origin: null; this service: http://testserver)"),
        ({"origin": "http://testserver:8080"}, "(Origin: http://testserver:8080;"),
        ({"sec-fetch-site": "cross-site"}, "(Sec-Fetch-Site: cross-site)"),
        ({"sec-fetch-site": "same-site"}, "(Sec-Fetch-Site: same-site)"),
        ({"content-type": "text/plain"}, "Content-Type text/plain is what any web page"),
        (
            {"content-type": "application/x-www-form-urlencoded"},
            "Content-Type application/x-www-form-urlencoded is what any web page",
        ),
        (
            {"content-type": "multipart/form-data; boundary=x"},
            "Content-Type multipart/form-data is what any web page",
        ),
    ],
    ids=[
        "origin",
        "null_origin",
        "other_port",
        "cross_site",
        "same_site",
        "text",
        "urlencoded",
        "multipart",
    ],
)
def test_what_a_page_of_another_site_can_send_is_refused_even_with_the_token(
    with_token, headers, message
):
    response = with_token.post(
        UNLOAD, headers=headers, content=b"x" if "content-type" in headers else None
    )
    assert response.status_code == 403
    assert message in response.json()["error"]
    if "content-type" not in headers:
        assert response.json()["error"].startswith(
            "cross-site request refused: the model-repository endpoints answer no page of "
            "another origin"
        )


def test_the_service_s_own_page_and_scripts_may_use_the_repository(with_token):
    same_origin = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    response = with_token.post("/v2/repository/index", headers=same_origin, json={})
    assert response.status_code == 200
    assert with_token.post("/v2/repository/index", headers={"sec-fetch-site": "none"}).is_success


def test_a_host_not_in_allowed_hosts_gets_400():
    with TestClient(app(allowed_hosts="[::1], localhost,127.0.0.1"), **LOOPBACK) as client:
        assert client.get("/health/live").status_code == 200
        for name in ("http://localhost:8000", "http://[::1]:8000"):
            assert client.get(f"{name}/health/live").status_code == 200
        refused = client.get("http://rebound.example:8000/models")
        assert (refused.status_code, refused.text) == (400, "Invalid host header")
        assert _security_headers(refused) == SECURITY_HEADERS
    with TestClient(app(), base_url="http://any.name.example") as anyone:  # default: *
        assert anyone.get("/health/live").status_code == 200


@pytest.mark.parametrize("hosts", ["*x.example", "a.*.example"])
def test_allowed_hosts_wildcards_are_checked(hosts):
    with pytest.raises(ValueError, match="a wildcard is \\* alone or \\*.domain"):
        Settings(allowed_hosts=hosts)


def test_every_answer_carries_the_security_headers_and_the_page_its_csp(with_token):
    page = with_token.get("/")
    assert page.status_code == 200 and _security_headers(page) == SECURITY_HEADERS
    assert page.headers["content-security-policy"] == PAGE_CSP
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in PAGE_CSP
    for response in (
        with_token.get("/models"),
        with_token.get("/static/app.js"),
        with_token.post("/predict", json={"pixels": [[[0] * 28] * 28]}),  # the front door
        with_token.get("/no/such/path"),
    ):
        assert _security_headers(response) == SECURITY_HEADERS, response.request.url
        assert "content-security-policy" not in response.headers


def test_the_page_has_no_inline_script_or_style():
    """What the CSP (no 'unsafe-inline') would block: the page works only without them."""
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", html, re.IGNORECASE)
    assert 'setAttribute("style"' not in (STATIC_DIR / "app.js").read_text()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_the_page_breaks_no_rule_of_its_csp_in_a_browser(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        page = browser.new_page()
        violations: list[str] = []
        page.on(
            "console", lambda m: "Content Security Policy" in m.text and violations.append(m.text)
        )
        page.goto(server.url + "/")
        box = page.locator("#pad").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.8, steps=8)
        page.mouse.up()
        page.click("#predict")
        expect(page.locator("#preview")).to_be_visible(timeout=10_000)
        browser.close()
    assert violations == []


def _security_headers(response) -> dict[str, str]:
    return {name: response.headers.get(name) for name in SECURITY_HEADERS}
