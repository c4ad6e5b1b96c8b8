"""The images every benchmark sends: a 28x28 MNIST PNG and a 300x300 photo-like JPEG."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
IMAGE_SIDE = 28
PHOTO_SIDE = 300


def mnist_digits(count: int = 64, mnist_dir: Path | None = None) -> np.ndarray:
    """The first ``count`` MNIST test digits as ``[count, 28, 28]`` uint8 (white on black);
    a seeded synthetic stroke image per digit where the data is not there."""
    directory = Path(mnist_dir or os.environ.get("MNIST_DATA_DIR") or DEFAULT_MNIST_DIR)
    path = directory / "t10k-images-idx3-ubyte.gz"
    if path.exists():
        with gzip.open(path, "rb") as stream:
            raw = stream.read(16 + count * IMAGE_SIDE * IMAGE_SIDE)
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, IMAGE_SIDE, IMAGE_SIDE)
    rng = np.random.default_rng(0)
    digits = np.zeros((count, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    for index in range(count):
        column = int(rng.integers(10, 18))
        digits[index, 5:23, column - 2 : column + 2] = 255
    return digits


def png_28(digit: np.ndarray) -> bytes:
    """A 28x28 greyscale PNG of one MNIST digit, as people send MNIST samples."""
    buffer = io.BytesIO()
    Image.fromarray(digit, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def photo_jpeg(digit: np.ndarray, seed: int = 0) -> bytes:
    """A 300x300 RGB JPEG that looks like a phone photo of a dark digit on paper: black on
    white, upscaled, off-centre, with uneven light and sensor noise."""
    rng = np.random.default_rng(seed)
    ink = Image.fromarray(digit, mode="L").resize((180, 180), Image.Resampling.BICUBIC)
    ink = ink.filter(ImageFilter.GaussianBlur(1.5))
    canvas = np.zeros((PHOTO_SIDE, PHOTO_SIDE), dtype=np.float32)
    canvas[70:250, 50:230] = np.asarray(ink, dtype=np.float32) / 255.0
    rows, columns = np.mgrid[0:PHOTO_SIDE, 0:PHOTO_SIDE].astype(np.float32) / PHOTO_SIDE
    paper = 235.0 - 60.0 * rows * columns
    grey = paper * (1.0 - 0.85 * canvas) + rng.normal(0.0, 6.0, canvas.shape)
    rgb = np.stack([grey * 1.0, grey * 0.97, grey * 0.9], axis=-1)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def normalised_batch(count: int) -> np.ndarray:
    """``[count, 28, 28]`` float32 MNIST digits in [0, 1], for tensor routes."""
    return mnist_digits(count).astype(np.float32) / 255.0
