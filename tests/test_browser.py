"""The page in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright) against real gunicorn with 2 workers on 127.0.0.1.

With the committed models the drawn and uploaded digits must be read correctly; with the
fake ones (before the models are committed) only the page's own behaviour is checked.
Screenshots are kept under ``test-artifacts/`` for CI to collect.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright

from tests.conftest import COMMITTED_MODELS, ROOT
from tests.fakes import fake_model_dir
from tests.images import encoded
from tests.servers import post_files, start_gunicorn

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1200, "height": 800}
PHONE = {"width": 390, "height": 844}
#: Strokes as fractions of the drawing pad: a "7" (bar, then the diagonal) and a "1".
SEVEN = [(0.3, 0.22), (0.72, 0.22), (0.45, 0.82)]
ONE = [(0.5, 0.18), (0.5, 0.84)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium; skipped when it is missing (fails under CI=true)."""
    if not CHROMIUM.exists():
        message = (
            f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def real_models() -> bool:
    """Whether the committed models are there (else the fakes stand in)."""
    return (COMMITTED_MODELS / "cnn.onnx").exists() and (COMMITTED_MODELS / "softmax.onnx").exists()


@pytest.fixture(scope="module")
def base_url(real_models: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``gunicorn serve:app`` with 2 workers over the committed models, or the fakes."""
    model_dir = COMMITTED_MODELS if real_models else fake_model_dir(tmp_path_factory.mktemp("m"))
    with start_gunicorn(model_dir, workers=2) as url:
        yield url


def open_page(
    browser: Any, base_url: str, viewport: dict[str, int], **options: Any
) -> tuple[Any, list[str]]:
    """A fresh page at ``/``, and the list its JavaScript errors and Content Security Policy
    violations are collected into."""
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(base_url + "/")
    return page, problems


def pad_points(page: Any, strokes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Turn fractions of the drawing pad into page coordinates."""
    box = page.locator("#pad").bounding_box()
    return [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in strokes]


def draw_with_mouse(page: Any, strokes: list[tuple[float, float]]) -> None:
    """Press the mouse at the first point and drag through the others."""
    points = pad_points(page, strokes)
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=20)
    page.mouse.up()


def draw_with_finger(page: Any, strokes: list[tuple[float, float]]) -> None:
    """The same stroke as touch events (Chromium turns them into touch pointer events)."""
    session = page.context.new_cdp_session(page)
    points = pad_points(page, strokes)
    path = [points[0]]
    for start, end in itertools.pairwise(points):
        path += [
            (start[0] + (end[0] - start[0]) * step / 20, start[1] + (end[1] - start[1]) * step / 20)
            for step in range(1, 21)
        ]
    for index, (x, y) in enumerate(path):
        kind = "touchStart" if index == 0 else "touchMove"
        session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def tap_until_sent(page: Any, selector: str, attempts: int = 3) -> None:
    """Tap ``selector`` until the page sends a request. Chromium sometimes takes a synthetic
    tap that follows a synthetic touch stroke within milliseconds for part of one gesture and
    sends no click; a person's finger is never that fast, so the tap is simply repeated."""
    for attempt in range(attempts):
        try:
            with page.expect_request(lambda request: "/predict" in request.url, timeout=3000):
                page.tap(selector)
            return
        except PlaywrightTimeoutError:
            if attempt == attempts - 1:
                raise


def submit_and_wait(page: Any, action: Any) -> dict[str, Any]:
    """Run ``action`` (a click, a file choice, a model change), wait for the /predict answer
    it causes and for the page to show it; returns the answer's JSON."""
    with page.expect_response(lambda response: "/predict" in response.url) as answer:
        action()
    body: dict[str, Any] = answer.value.json()
    page.wait_for_function(
        "document.getElementById('result').getAttribute('aria-busy') === 'false'"
    )
    return body


def shown_result(page: Any) -> dict[str, Any]:
    """What the page shows: label, status line, bar digits and values, the top bar."""
    bars = page.locator("#chart li.bar")
    return {
        "label": page.inner_text("#label"),
        "status": page.inner_text("#status"),
        "classifier": page.inner_text("#classifier"),
        "bars": [
            (
                bars.nth(index).get_attribute("data-digit"),
                bars.nth(index).get_attribute("data-probability"),
            )
            for index in range(bars.count())
        ],
        "top": page.locator("#chart li.top").get_attribute("data-digit"),
        "seen": page.get_attribute("#seen", "src") or "",
    }


def digit_png(strokes: list[tuple[float, float]], size: int = 240) -> bytes:
    """A black-on-white PNG of the strokes, thick, with a margin: a digit a user might upload."""
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).line(
        [(x * size, y * size) for x, y in strokes], fill=0, width=size // 12, joint="curve"
    )
    return encoded(image)


def assert_shows(shown: dict[str, Any], answer: dict[str, Any]) -> None:
    """The page shows exactly the server's answer: label, ten bars, top bar, 28x28 image."""
    assert shown["label"] == str(answer["label"])
    assert [digit for digit, _ in shown["bars"]] == [str(digit) for digit in range(10)]
    assert [float(value) for _, value in shown["bars"]] == pytest.approx(answer["probabilities"])
    assert shown["top"] == str(answer["label"])
    assert str(answer["label"]) in shown["status"]
    assert shown["classifier"].startswith(answer["model"])
    assert shown["seen"].startswith("data:image/png;base64,")


def test_draw_a_digit_and_read_the_label(browser: Any, base_url: str, real_models: bool) -> None:
    page, problems = open_page(browser, base_url, DESKTOP)
    draw_with_mouse(page, SEVEN)
    answer = submit_and_wait(page, lambda: page.click("#recognise"))
    shown = shown_result(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-drawn-desktop.png"), full_page=True)
    assert_shows(shown, answer)
    assert answer["model"] == "cnn"
    if real_models:
        assert shown["label"] == "7"
    page.click("#clear")
    page.click("#recognise")
    assert "Nothing drawn" in page.inner_text("#error")
    assert problems == []


def test_upload_a_file_and_switch_model(browser: Any, base_url: str, real_models: bool) -> None:
    page, problems = open_page(browser, base_url, DESKTOP)
    four = digit_png([(0.6, 0.85), (0.6, 0.15), (0.25, 0.6), (0.78, 0.6)])
    file = {"name": "four.png", "mimeType": "image/png", "buffer": four}
    answer = submit_and_wait(page, lambda: page.set_input_files("#file", file))
    assert_shows(shown_result(page), answer)
    status, direct = post_files(base_url + "/predict?model=cnn", [("file", "four.png", four)])
    assert status == 200 and direct["label"] == answer["label"]
    if real_models:
        assert answer["label"] == 4
    switched = submit_and_wait(page, lambda: page.select_option("#model", "softmax"))
    assert switched["model"] == "softmax"
    assert_shows(shown_result(page), switched)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-upload-desktop.png"), full_page=True)
    assert problems == []


def test_server_errors_are_shown(browser: Any, base_url: str) -> None:
    page, _ = open_page(browser, base_url, DESKTOP)
    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a digit"}
    with page.expect_response(lambda response: "/predict" in response.url) as response:
        page.set_input_files("#file", notes)
    assert 400 <= response.value.status < 500
    answer = response.value.json()
    page.wait_for_function(
        "document.getElementById('result').getAttribute('aria-busy') === 'false'"
    )
    error = page.locator("#error")
    assert error.is_visible()
    assert error.inner_text() == f"{answer['title']}: {answer['description']}"
    assert page.locator("#answer").is_hidden()


def test_phone_finger_drawing_fits_the_screen(
    browser: Any, base_url: str, real_models: bool
) -> None:
    page, problems = open_page(browser, base_url, PHONE, is_mobile=True, has_touch=True)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    draw_with_finger(page, ONE)
    answer = submit_and_wait(page, lambda: tap_until_sent(page, "#recognise"))
    assert_shows(shown_result(page), answer)
    if real_models:
        assert answer["label"] == 1
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
    assert problems == []
