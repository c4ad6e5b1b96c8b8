"""Uploads people send, made in memory: MNIST's test digits (read from its IDX files),
digits typed in this machine's fonts, and phone photos of handwritten digits on paper.
Shared by the recognition tests and ``bench.recognition`` / ``bench.uploads``."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from serve.images import read_digit
from serve.model.runtime import OnnxModel

MAX_PIXELS = 40_000_000
FONT_SIZE = 96
FONT_CANVAS = 160
#: Sizes (width, height) of the phone photos: full size of a 12 MP phone, and mid-size.
FULL_PHOTO = (4032, 3024)
MID_PHOTO = (640, 480)
#: EXIF orientation tags phones write for a picture taken sideways, and upright.
ORIENTATIONS = (1, 6, 8)
_STORED = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def mnist_test_set(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test images ``[10000, 28, 28]`` and labels, from IDX files (``.gz`` or raw)."""

    def find(stem: str) -> Path:
        packed = mnist_dir / f"{stem}.gz"
        return packed if packed.exists() else mnist_dir / stem

    return read_idx(find("t10k-images-idx3-ubyte")), read_idx(find("t10k-labels-idx1-ubyte"))


def mnist_as_upload(digit: np.ndarray, index: int) -> bytes:
    """One MNIST digit as a user would send it: inverted to black on white, upscaled to a
    side of 112..280 px (varying with ``index``), with a white margin, as a JPEG."""
    side = 112 + (index * 37) % 169
    margin = side // 8
    upscaled = Image.fromarray(255 - digit, mode="L").resize(
        (side - 2 * margin, side - 2 * margin), Image.Resampling.BICUBIC
    )
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(upscaled, (margin, margin))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def machine_fonts() -> list[Path]:
    """Every TTF/OTF font file ``fc-list`` reports, sorted; empty without fontconfig."""
    if shutil.which("fc-list") is None:
        return []
    listing = subprocess.run(
        ["fc-list", ":", "file"], capture_output=True, text=True, check=False
    ).stdout
    paths = {line.split(":")[0].strip() for line in listing.splitlines()}
    return sorted(Path(path) for path in paths if path.lower().endswith((".ttf", ".otf")))


def render_digit(font_path: Path, digit: int, size: int = FONT_SIZE) -> bytes:
    """``digit`` typed in the font, black on white, centred in a square PNG."""
    font = ImageFont.truetype(str(font_path), size)
    canvas = Image.new("L", (FONT_CANVAS * size // FONT_SIZE,) * 2, 255)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    position = (
        (canvas.width - (right - left)) / 2 - left,
        (canvas.height - (bottom - top)) / 2 - top,
    )
    draw.text(position, str(digit), fill=0, font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def phone_photo(
    digit: np.ndarray, size: tuple[int, int], seed: int = 0, orientation: int = 1
) -> bytes:
    """A phone photo of a handwritten digit (an MNIST digit, white on black) on paper: dark
    ink, the digit a third of the shorter side and off-centre, light falling off across
    the page, sensor noise and a colour cast; an RGB JPEG of ``size`` (width, height) as
    seen upright, stored turned and tagged with EXIF ``orientation`` (1, 3, 6 or 8)."""
    rng = np.random.default_rng(seed)
    width, height = size
    side = int(min(width, height) * rng.uniform(0.3, 0.45))
    ink = Image.fromarray(digit, mode="L").resize((side, side), Image.Resampling.BICUBIC)
    coverage = np.zeros((height, width), np.float32)
    top = int(rng.uniform(0.15, 0.85) * (height - side))
    left = int(rng.uniform(0.15, 0.85) * (width - side))
    coverage[top : top + side, left : left + side] = np.asarray(ink, np.float32) / 255
    corner = rng.uniform(0.35, 0.6)
    light = np.asarray(
        Image.fromarray(
            np.array([[1.0, 1 - corner / 2], [1 - corner / 2, 1 - corner]], np.float32)
        ).resize((width, height), Image.Resampling.BILINEAR),
        np.float32,
    )
    noise = rng.normal(0, 3.0, (256, 256)).astype(np.float32)
    grain = np.tile(noise, (height // 256 + 1, width // 256 + 1))[:height, :width]
    grey = 240 * light * (1 - 0.8 * coverage) + grain
    cast = np.array([1.0, 0.97, 0.9], np.float32)
    rgb = np.clip(grey[..., None] * cast, 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, mode="RGB")
    exif = Image.Exif()
    if orientation in _STORED:
        image = image.transpose(_STORED[orientation])
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def preprocess(uploads: Iterator[bytes]) -> np.ndarray:
    """Each upload read as the service reads it (``serve.images.read_digit``), stacked as
    ``[n, 28, 28]``."""
    return np.stack([read_digit(data, MAX_PIXELS) for data in uploads])


def classify(model: OnnxModel, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Predicted labels of ``[n, 28, 28]`` images, batch by batch."""
    return np.concatenate(
        [
            model.predict(images[start : start + batch]).argmax(axis=1)
            for start in range(0, len(images), batch)
        ]
    )


def mnist_upload_accuracy(
    model: OnnxModel, mnist_dir: Path, limit: int | None = None
) -> tuple[float, np.ndarray]:
    """Accuracy on MNIST's test digits sent as inverted, upscaled JPEGs; and the indices
    it got wrong."""
    images, labels = mnist_test_set(mnist_dir)
    count = len(images) if limit is None else min(limit, len(images))
    inputs = preprocess(mnist_as_upload(images[index], index) for index in range(count))
    wrong = np.flatnonzero(classify(model, inputs) != labels[:count])
    return 1 - len(wrong) / count, wrong


def font_accuracy(model: OnnxModel, fonts: list[Path]) -> tuple[float, list[tuple[str, int, int]]]:
    """Accuracy on digits 0-9 typed in each font; and the (font, digit, predicted) misses."""
    cases = [(font, digit) for font in fonts for digit in range(10)]
    inputs = preprocess(render_digit(font, digit) for font, digit in cases)
    predicted = classify(model, inputs)
    misses = [
        (font.name, digit, int(label))
        for (font, digit), label in zip(cases, predicted, strict=True)
        if label != digit
    ]
    return 1 - len(misses) / len(cases), misses


def phone_photo_accuracy(
    model: OnnxModel, mnist_dir: Path, count: int
) -> tuple[float, list[tuple[int, int, int]]]:
    """Accuracy on full-size (4032x3024) phone photos of the first ``count`` MNIST test
    digits, upright or EXIF-rotated; and the (index, digit, predicted) misses."""
    images, labels = mnist_test_set(mnist_dir)
    inputs = preprocess(
        phone_photo(images[index], FULL_PHOTO, index, ORIENTATIONS[index % len(ORIENTATIONS)])
        for index in range(count)
    )
    predicted = classify(model, inputs)
    misses = [
        (index, int(labels[index]), int(label))
        for index, label in enumerate(predicted)
        if label != labels[index]
    ]
    return 1 - len(misses) / count, misses
