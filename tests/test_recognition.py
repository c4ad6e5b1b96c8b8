"""The committed CNN on rendered uploads, through decode + to_mnist (slow).

Acceptance figures: >= 99% of MNIST's 10,000 test digits sent as inverted, upscaled JPEGs
with a margin, and >= 98% of digits 0-9 typed in this machine's fonts, black on white.
Then typed digits dressed up as canvas exports, phone photos, ruled paper, dusty scans,
marker strokes, small digits in large frames and rotated phone pictures; and >= 98% of
full-size (4032x3024) phone photos of MNIST test digits, upright or EXIF-rotated.
Skipped while onnx_models/cnn.onnx does not exist (``RECOGNITION_MODEL`` picks another file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from serve.images.decode import decode
from serve.images.normalise import to_mnist
from serve.model.runtime import CPU, OnnxModel
from tests import recognition_sets
from tests.images import encoded
from tests.recognition_sets import font_accuracy, machine_fonts, mnist_upload_accuracy

pytestmark = pytest.mark.slow

MODEL_PATH = Path(
    os.environ.get(
        "RECOGNITION_MODEL", Path(__file__).resolve().parent.parent / "onnx_models" / "cnn.onnx"
    )
)
FONTS = machine_fonts()
PLAIN_FONT = next(
    (font for font in FONTS if font.name == "DejaVuSans.ttf"), FONTS[0] if FONTS else None
)
BOLD_FONT = next((font for font in FONTS if font.name == "DejaVuSans-Bold.ttf"), PLAIN_FONT)
needs_fonts = pytest.mark.skipif(PLAIN_FONT is None, reason="no TTF/OTF font found by fc-list")


@pytest.fixture(scope="module")
def cnn() -> OnnxModel:
    """The committed CNN on one CPU thread; skips while it has not been exported yet."""
    if not MODEL_PATH.exists():
        pytest.skip(f"{MODEL_PATH} does not exist yet (run python -m train and python -m export)")
    return OnnxModel(MODEL_PATH, [CPU], 1)


def label(model: OnnxModel, image: Image.Image) -> int:
    """What the model reads in ``image`` after preprocessing."""
    return int(model.predict(to_mnist(image)[None]).argmax())


def glyph(digit: int, height: int, font: Path | None = None) -> np.ndarray:
    """Ink coverage in [0, 1] of ``digit`` typed about ``height`` px tall, tightly cropped."""
    face = ImageFont.truetype(str(font or PLAIN_FONT), height)
    canvas = Image.new("L", (height * 2, height * 2), 0)
    ImageDraw.Draw(canvas).text((height // 2, height // 4), str(digit), fill=255, font=face)
    pixels = np.asarray(canvas, np.float64) / 255
    rows, columns = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    return pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def placed(coverage: np.ndarray, size: tuple[int, int], top_left: tuple[int, int]) -> np.ndarray:
    """``coverage`` pasted into an empty ``size`` (width, height) frame at ``top_left``."""
    frame = np.zeros((size[1], size[0]))
    top, left = top_left[1], top_left[0]
    frame[top : top + coverage.shape[0], left : left + coverage.shape[1]] = coverage
    return frame


def jpeg(image: Image.Image, quality: int = 80, **options: object) -> Image.Image:
    """Round-trip through JPEG bytes and decode, as an upload is."""
    return decode(encoded(image, "JPEG", quality=quality, **options), 40_000_000)


def canvas_export(digit: int) -> Image.Image:
    """Dark strokes on a fully transparent 280x280 canvas."""
    ink = placed(glyph(digit, 180, BOLD_FONT), (280, 280), (70, 50))
    alpha = (ink * 255).astype(np.uint8)
    return Image.fromarray(np.dstack([np.zeros((280, 280, 3), np.uint8), alpha]), mode="RGBA")


def phone_photo(digit: int) -> Image.Image:
    """Paper under a light gradient, with noise, a 640x480 JPEG."""
    rng = np.random.default_rng(digit)
    rows, columns = np.mgrid[0:480, 0:640]
    light = 0.95 - 0.45 * (rows / 480 + columns / 640) / 2
    ink = placed(glyph(digit, 200), (640, 480), (250, 130))
    pixels = light * (1 - 0.75 * ink) + rng.normal(0, 0.03, light.shape)
    return jpeg(Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8)).convert("RGB"))


def ruled_paper(digit: int) -> Image.Image:
    """Blue ink on notebook paper with pale ruled lines and a red margin."""
    ink = placed(glyph(digit, 150), (400, 400), (160, 110))
    image = Image.new("RGB", (400, 400), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    for row in range(20, 400, 40):
        draw.line([(0, row), (400, row)], fill=(150, 180, 225), width=2)
    draw.line([(60, 0), (60, 400)], fill=(225, 130, 130), width=2)
    paper = np.asarray(image, np.float64)
    blue = np.array([25, 35, 120], np.float64)
    pixels = paper * (1 - ink[..., None]) + blue * ink[..., None]
    return jpeg(Image.fromarray(pixels.astype(np.uint8)))


def dusty_scan(digit: int) -> Image.Image:
    """A scan with dust specks scattered away from the digit."""
    rng = np.random.default_rng(100 + digit)
    ink = placed(glyph(digit, 120), (300, 300), (100, 90))
    image = Image.fromarray(((1 - ink) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        left, top = rng.choice([rng.uniform(0, 60), rng.uniform(240, 296)]), rng.uniform(0, 296)
        draw.ellipse((left, top, left + 3, top + 3), fill=40)
    return image


def marker(digit: int) -> Image.Image:
    """A heavy font made heavier: thick marker-like strokes, black on white."""
    coverage = glyph(digit, 160, BOLD_FONT)
    heavier = Image.fromarray((np.pad(coverage, 8) * 255).astype(np.uint8)).filter(
        ImageFilter.MaxFilter(9)
    )
    ink = placed(np.asarray(heavier, np.float64) / 255, (300, 300), (70, 50))
    return Image.fromarray(((1 - ink) * 255).astype(np.uint8))


def small_in_large_frame(digit: int) -> Image.Image:
    """A 40 px digit in a 1600x1200 photo-sized frame."""
    ink = placed(glyph(digit, 40), (1600, 1200), (1100, 400))
    return Image.fromarray(((1 - 0.8 * ink) * 230).astype(np.uint8))


def rotated_phone_picture(digit: int) -> Image.Image:
    """Stored sideways with EXIF orientation 8 (rotate 270 to view), as phones do."""
    upright = Image.fromarray(
        ((1 - placed(glyph(digit, 150), (320, 240), (110, 40))) * 255).astype(np.uint8)
    )
    exif = Image.Exif()
    exif[0x0112] = 8
    return jpeg(upright.transpose(Image.Transpose.ROTATE_270), quality=90, exif=exif.tobytes())


SCENARIOS: dict[str, Callable[[int], Image.Image]] = {
    "canvas-export": canvas_export,
    "phone-photo": phone_photo,
    "ruled-paper": ruled_paper,
    "dusty-scan": dusty_scan,
    "marker": marker,
    "small-in-large-frame": small_in_large_frame,
    "rotated-phone-picture": rotated_phone_picture,
}


def test_mnist_test_digits_as_inverted_upscaled_jpegs(cnn: OnnxModel, mnist_dir: Path) -> None:
    accuracy, wrong = mnist_upload_accuracy(cnn, mnist_dir)
    assert accuracy >= 0.99, f"{accuracy:.2%} correct; wrong: {wrong[:50].tolist()}"


@needs_fonts
def test_digits_typed_in_every_font_of_this_machine(cnn: OnnxModel) -> None:
    accuracy, misses = font_accuracy(cnn, FONTS)
    assert accuracy >= 0.98, f"{accuracy:.2%} correct; misses (font, digit, read as): {misses}"


@needs_fonts
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_typed_digits_dressed_as_real_uploads(cnn: OnnxModel, scenario: str) -> None:
    readings = {digit: label(cnn, SCENARIOS[scenario](digit)) for digit in range(10)}
    wrong = {digit: read for digit, read in readings.items() if read != digit}
    assert len(wrong) <= 1, f"{scenario}: digit -> read as {wrong}"


def test_full_size_phone_photos_of_mnist_digits(cnn: OnnxModel, mnist_dir: Path) -> None:
    accuracy, misses = recognition_sets.phone_photo_accuracy(cnn, mnist_dir, 100)
    assert accuracy >= 0.98, f"{accuracy:.2%} correct; misses (index, digit, read as): {misses}"
