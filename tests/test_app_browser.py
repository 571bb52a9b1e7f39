"""The draw-a-digit page in a real headless Chromium (Debian's package), driven by Playwright.

Skips, saying why, when /usr/bin/chromium or the playwright client is missing; .ci/run installs Chromium.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# --disable-background-networking & co: Chromium otherwise dials out at start-up, which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium); .ci/run does",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python client is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(app_run):
    import uvicorn

    from mnistlab.app.server import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(app_run), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_drawing_a_seven_gives_a_prediction(server_url):
    assert shutil.which(str(CHROMIUM))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server_url)
            # Selector waits, not wait_for_function: the page's CSP (no 'unsafe-eval') stays in force.
            page.locator("#model-info", has_text="parameters").wait_for()
            box = page.locator("#pad").bounding_box()
            x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
            # A "7": a top bar left to right, then a stroke down and to the left, in canvas fractions.
            stroke = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]
            page.mouse.move(x0 + stroke[0][0] * w, y0 + stroke[0][1] * h)
            page.mouse.down()
            for fx, fy in stroke[1:]:
                page.mouse.move(x0 + fx * w, y0 + fy * h, steps=12)
            page.mouse.up()
            page.wait_for_selector("#label:not([data-label=''])", timeout=15_000)
            page.wait_for_load_state("networkidle")
            label = int(page.locator("#label").inner_text())
            probs = page.eval_on_selector_all("#bars li", "els => els.map(e => parseFloat(e.dataset.p))")
            seen = page.evaluate(
                "Array.from(document.getElementById('seen').getContext('2d')"
                ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 === 0)"
            )
            assert len(probs) == 10 and abs(sum(probs) - 1) <= 1e-3
            assert label == max(range(10), key=probs.__getitem__)
            top_bar = page.locator("#bars li.top .fill").bounding_box()
            assert top_bar is not None and top_bar["width"] > 0  # the bars are really drawn, not just data
            assert max(seen) == 255 and sum(v > 0 for v in seen) > 20  # the 28x28 the model saw is shown
            page.click("#clear")
            assert page.locator("#label").inner_text() == "–"
            assert not errors, errors
        finally:
            browser.close()


def photo_jpeg() -> bytes:
    """A phone-photo-like JPEG of one MNIST test digit on shaded paper (bench/paper_photos.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from mnistlab.data import load_dataset
    from paper_photos import photo_set

    arrays = load_dataset("mnist", progress=False)
    return photo_set(arrays.test_images[:1], arrays.test_labels[:1], "shadow", 1, seed=0)[0].jpeg


def test_camera_photo_and_a_whole_number_on_the_wide_canvas(server_url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server_url)
            page.locator("#model-info", has_text="parameters").wait_for()
            camera = page.locator("#camera")
            assert (
                camera.get_attribute("accept") == "image/*"
                and camera.get_attribute("capture") == "environment"
            )
            # The camera's photo goes through the same endpoint; the page shows what the model saw.
            camera.set_input_files(
                files=[{"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": photo_jpeg()}]
            )
            page.wait_for_selector("#label:not([data-label=''])", timeout=15_000)
            assert page.locator("#status").inner_text() == "photo: photo.jpg"
            seen = page.evaluate(
                "Array.from(document.getElementById('seen').getContext('2d')"
                ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 === 0)"
            )
            assert max(seen) == 255 and sum(v > 0 for v in seen) > 20
            # Number mode: a wider canvas; two digits written side by side come back as two boxed digits.
            page.check("#number-mode")
            box = page.locator("#pad").bounding_box()
            assert box["width"] >= 2.5 * box["height"]
            x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
            one = [(0.12, 0.15), (0.12, 0.85)]  # a "1", then a "7" well to its right
            seven = [(0.3, 0.2), (0.45, 0.2), (0.36, 0.85)]
            for stroke in (one, seven):
                page.mouse.move(x0 + stroke[0][0] * w, y0 + stroke[0][1] * h)
                page.mouse.down()
                for fx, fy in stroke[1:]:
                    page.mouse.move(x0 + fx * w, y0 + fy * h, steps=12)
                page.mouse.up()
            page.locator("#digits li:nth-child(2)").wait_for(timeout=15_000)
            page.wait_for_load_state("networkidle")
            number = page.locator("#number").inner_text()
            assert len(number) == 2 and page.locator("#seen-digits canvas").count() == 2
            labels = page.eval_on_selector_all("#digits li", "els => els.map(e => e.dataset.label)")
            assert "".join(labels) == number
            boxes = page.evaluate(
                "Array.from(document.getElementById('boxes').getContext('2d')"
                ".getImageData(0, 0, 840, 280).data).filter((v, i) => i % 4 === 3 && v > 0).length"
            )
            assert boxes > 100  # each digit's box is drawn over the canvas
            assert not errors, errors
        finally:
            browser.close()
