"""The draw-a-digit page and the offline API docs, in a real browser (Debian's chromium).

Playwright drives /usr/bin/chromium (its own browser download is not reachable here); `.ci/run`
installs chromium. A failing test leaves a screenshot in a temporary directory (printed).
`MNIST_PAGE_SCREENSHOT=docs/page.png` makes `test_ring_reads_zero` write the README's picture.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from devtools import REPO_ROOT
from devtools.pictures.kinds import sample

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
)
VARIANTS = ("group", "instance", "layer")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(request, browser, server, tmp_path_factory):
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    page = context.new_page()
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(server.url + "/")
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = tmp_path_factory.mktemp("screenshots") / f"{request.node.name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the failure: {path}")
    context.close()


def _draw(page, points: list[tuple[float, float]]) -> None:
    """One stroke through `points`, in the pad's own coordinates (280 wide, 560 for numbers)."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / int(page.locator("#pad").get_attribute("width"))
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0] * scale, y0 + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x * scale, y0 + y * scale, steps=2)
    page.mouse.up()


def _expect_digit(page, digit: int) -> None:
    from playwright.sync_api import expect

    for variant in VARIANTS:
        expect(page.locator(f"#result-{variant} .digit")).to_have_text(str(digit), timeout=10_000)


def _only_own_origin(page, server) -> None:
    outside = [url for url in page.requests if not url.startswith((server.url, "data:", "blob:"))]
    assert outside == []


def test_vertical_stroke_reads_one(page, server):
    _draw(page, [(140, 40 + 10 * i) for i in range(21)])
    _expect_digit(page, 1)
    assert page.locator("#preview").is_visible()
    assert page.locator("#preview").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#result-group .version").inner_text().endswith(", int8)")  # fastest
    assert "ms" in page.locator("#latency").inner_text()
    assert page.locator("#result-layer .bars .bar").count() == 10
    _only_own_origin(page, server)


def test_the_chosen_precision_runs_and_is_shown(page, server):
    from playwright.sync_api import expect

    page.select_option("#precision", "fp32")
    _draw(page, [(140, 40 + 10 * i) for i in range(21)])
    _expect_digit(page, 1)
    for variant in VARIANTS:
        expect(page.locator(f"#result-{variant} .version")).to_contain_text(", fp32)")


def test_a_number_is_read_with_a_box_around_each_digit(page, server):
    from playwright.sync_api import expect

    page.check("#number-mode")
    assert page.locator("#pad").get_attribute("width") == "560"
    for left in (120, 300, 440):  # three ones, drawn apart
        _draw(page, [(left, 60 + 9 * i) for i in range(19)])
    expect(page.locator("#number")).to_have_text("111", timeout=10_000)
    expect(page.locator("#number-digits img")).to_have_count(3)
    assert page.locator("#predictions").is_hidden()
    # The boxes are drawn on the overlay, not on the pad the next request sends.
    painted = page.evaluate(
        """() => { const c = document.getElementById('boxes').getContext('2d');
                   return [...c.getImageData(0, 0, 560, 280).data].some((v, i) => i % 4 == 3 && v > 0); }"""
    )
    assert painted
    _only_own_origin(page, server)


def test_ring_reads_zero(page, server):
    ring = [
        (140 + 60 * math.sin(t), 140 - 95 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 48)
    ]
    _draw(page, ring)
    _expect_digit(page, 0)
    screenshot = os.environ.get("MNIST_PAGE_SCREENSHOT")
    if screenshot:
        page.screenshot(path=str(REPO_ROOT / screenshot))
    _only_own_origin(page, server)


def test_a_scribble_says_it_does_not_look_like_a_digit(page, server):
    from playwright.sync_api import expect

    hash_sign = [  # "#": two slanted uprights and two bars, drawn as one stroke
        (110, 50), (95, 230), (100, 200), (175, 50), (160, 230), (165, 190),
        (60, 170), (230, 170), (225, 110), (70, 110),
    ]  # fmt: skip
    _draw(page, hash_sign)
    for variant in VARIANTS:
        card = page.locator(f"#result-{variant}")
        expect(card.locator(".confidence")).to_contain_text(
            "this does not look like a digit", timeout=10_000
        )
        expect(card.locator(".digit")).to_have_text("?")
    page.click("#clear")
    _draw(page, [(140, 40 + 10 * i) for i in range(21)])
    _expect_digit(page, 1)
    assert "sure" in page.locator("#result-group .confidence").inner_text()


def test_uploaded_photo_is_read(page, server, mnist):
    picture, label = sample("grey_photo", mnist.test_images, mnist.test_labels, 1, seed=5)[0]
    page.set_input_files(
        "#file",
        files=[{"name": f"photo.{picture.extension}", "mimeType": picture.media_type,
                "buffer": picture.data}],
    )  # fmt: skip
    _expect_digit(page, label)
    assert page.locator("#preview").is_visible()
    _only_own_origin(page, server)


def test_a_photo_of_a_number_uploaded_as_one_digit_is_read_as_a_number(page, server):
    from playwright.sync_api import expect

    number = (REPO_ROOT / "examples" / "number-2024.jpg").read_bytes()
    page.set_input_files(
        "#file", files=[{"name": "number.jpg", "mimeType": "image/jpeg", "buffer": number}]
    )
    expect(page.locator("#number")).to_have_text("2024", timeout=10_000)
    assert page.locator("#number-mode").is_checked()
    expect(page.locator("#number-digits img")).to_have_count(4)


def test_two_digits_drawn_on_the_one_digit_pad_get_a_hint(page):
    from playwright.sync_api import expect

    _draw(page, [(90, 60), (90, 220)])
    _draw(page, [(190, 60), (190, 220)])
    expect(page.locator("#error")).to_have_text(
        "This holds 2 digits side by side: tick “Read a number” to read them all.", timeout=10_000
    )
    assert not page.locator("#number-mode").is_checked()


def test_the_file_input_opens_a_phone_camera(page):
    upload = page.locator("#file")
    assert upload.get_attribute("capture") == "environment"
    assert upload.get_attribute("accept").startswith("image/*")


def test_a_large_photo_is_shown_upright_and_scaled_down_before_uploading(page, server, mnist):
    """A 12-megapixel phone JPEG stored sideways (EXIF orientation 6): the page draws it
    upright on the pad and uploads it at no more than 1600 pixels a side."""
    import io

    from PIL import Image

    digit = 255 - np.kron(mnist.test_images[1], np.ones((140, 140), np.uint8))  # 3920 px
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(digit).convert("RGB").transpose(Image.Transpose.ROTATE_90).save(
        buffer, "JPEG", quality=85, exif=exif.tobytes()
    )
    page.evaluate(  # record the size of each picture the page uploads
        """() => { const send = window.fetch; window.uploaded = [];
          window.fetch = (url, init) => {
            for (const [, value] of init.body.entries()) window.uploaded.push(value.size);
            return send(url, init); }; }"""
    )
    page.set_input_files(
        "#file",
        files=[{"name": "phone.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()}],
    )
    _expect_digit(page, int(mnist.test_labels[1]))
    uploaded = page.evaluate("() => window.uploaded")
    assert len(uploaded) == 1 and uploaded[0] < len(buffer.getvalue()) / 2
    # The pad shows the photo upright: the digit's own top row of ink is at the pad's top.
    shown = page.evaluate(
        "() => Array.from(document.getElementById('pad').getContext('2d')"
        ".getImageData(0, 0, 280, 280).data.filter((_, i) => i % 4 === 0))"
    )
    shown = np.array(shown, np.uint8).reshape(280, 280)
    expected = np.asarray(Image.fromarray(digit).resize((280, 280)))
    assert np.abs(shown.astype(int) - expected).mean() < 20
    _only_own_origin(page, server)


def test_a_heic_photo_the_browser_cannot_decode_is_sent_as_it_is(page, mnist):
    picture, label = sample("heic", mnist.test_images, mnist.test_labels, 1, seed=5)[0]
    page.set_input_files(
        "#file", files=[{"name": "IMG_0001.HEIC", "mimeType": "", "buffer": picture.data}]
    )
    _expect_digit(page, label)


def test_blank_pad_asks_for_a_digit(page):
    from playwright.sync_api import expect

    page.click("#predict")
    expect(page.locator("#error")).to_contain_text("Draw a digit first")


def test_clear_empties_the_pad(page):
    from playwright.sync_api import expect

    _draw(page, [(140, 40 + 10 * i) for i in range(21)])
    _expect_digit(page, 1)
    page.click("#clear")
    page.click("#predict")
    expect(page.locator("#error")).to_contain_text("Draw a digit first")


def test_page_fits_a_phone(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = context.new_page()
    page.goto(server.url + "/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    assert page.locator("label.file").is_visible()
    context.close()


def test_docs_render_offline(page, server):
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock-summary-path", has_text="/predict").count() >= 1
    _only_own_origin(page, server)


def test_a_correction_made_in_the_page_is_kept_for_training(browser, tmp_path):
    """With MNIST_FEEDBACK_DIR set, the page offers "the right digit is"; what it sends is what
    `mnist-train --corrections` reads (tests/system/test_train_export.py trains on such files)."""
    from playwright.sync_api import expect

    from devtools.committed import committed_models
    from devtools.servers import Server
    from mnist_shared.corrections import load_corrections

    feedback = tmp_path / "feedback"
    server = Server(committed_models(), env={"MNIST_FEEDBACK_DIR": str(feedback)})
    try:
        server.wait_loaded()
        context = browser.new_context(viewport={"width": 1000, "height": 760})
        page = context.new_page()
        page.goto(server.url + "/")
        _draw(page, [(140, 40 + 10 * i) for i in range(21)])
        _expect_digit(page, 1)
        expect(page.locator("#correct")).to_be_visible()
        page.select_option("#correct-digit", "7")
        page.click("#correct button")
        expect(page.locator("#correct-status")).to_have_text(
            "Thank you: kept for the next training."
        )
        context.close()
        listed = httpx.get(server.url + "/models").json()["models"]
    finally:
        server.stop()
    training, held_out = load_corrections(feedback)
    (correction,) = training + held_out
    assert correction.label == 7 and correction.variant == "all"
    assert correction.versions == {row["variant"]: row["served_version"] for row in listed}
    assert set(correction.versions) == set(VARIANTS)
    assert correction.pixels.shape == (28, 28) and correction.pixels.max() > 200


def test_the_page_offers_no_correction_where_feedback_is_off(page, server):
    from playwright.sync_api import expect

    _draw(page, [(140, 40 + 10 * i) for i in range(21)])
    _expect_digit(page, 1)
    expect(page.locator("#correct")).to_be_hidden()
