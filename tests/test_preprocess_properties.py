"""Property-based tests of serve.images.normalise: any image of any size, mode and value range
gives a finite 28x28 in [0, 1], or a clean BlankImage (a 422), never another exception."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw

from serve.errors import BlankImage
from serve.images.normalise import to_mnist, to_png_data_url

MODES_FROM_BYTES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV"]
CHANNELS = {"1": 1, "L": 1, "P": 1, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4, "YCbCr": 3, "HSV": 3}


def check(image: Image.Image) -> None:
    """The property itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value" and the like count as failures.
        try:
            digit = to_mnist(image)
        except BlankImage as blank:
            assert blank.status == 422 and blank.description
            return
    assert digit.shape == (28, 28)
    assert digit.dtype == np.float32
    assert np.isfinite(digit).all()
    assert digit.min() >= 0.0 and digit.max() <= 1.0
    assert digit.max() > 0.0, "a digit that is not blank has some ink"
    assert to_png_data_url(digit).startswith("data:image/png;base64,")


def from_bytes(mode: str, pixels: np.ndarray) -> Image.Image:
    """An image of ``mode`` from a uint8 array with that mode's channel count."""
    if mode == "1":
        return Image.fromarray(pixels[..., 0] > 127)
    if mode == "P":
        image = Image.fromarray(pixels[..., 0], mode="L").convert("P")
        image.info["transparency"] = int(pixels[0, 0, 0])
        return image
    if CHANNELS[mode] == 1:
        return Image.fromarray(pixels[..., 0], mode=mode)
    return Image.frombytes(mode, (pixels.shape[1], pixels.shape[0]), pixels.tobytes())


sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MODES_FROM_BYTES), sizes, st.data())
def test_any_small_byte_image(mode: str, size: tuple[int, int], data: st.DataObject) -> None:
    shape = (size[0], size[1], max(CHANNELS[mode], 1))
    pixels = data.draw(hnp.arrays(np.uint8, shape))
    check(from_bytes(mode, pixels))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes,
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 24), st.integers(1, 24)),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
)
def test_any_float_image_with_nan_infinity_and_any_range(
    size: tuple[int, int], pixels: np.ndarray
) -> None:
    check(Image.fromarray(pixels, mode="F"))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.int32, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_any_32_bit_integer_image(pixels: np.ndarray) -> None:
    check(Image.fromarray(pixels))


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.uint16, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_any_16_bit_image(pixels: np.ndarray) -> None:
    check(Image.fromarray(pixels))


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 900),
    height=st.integers(1, 900),
    mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "I;16", "F"]),
    background=st.integers(0, 255),
    ink=st.integers(0, 255),
    stroke=st.integers(1, 60),
    noise=st.floats(0, 80),
    specks=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_large_drawing_with_noise_and_specks(
    width: int,
    height: int,
    mode: str,
    background: int,
    ink: int,
    stroke: int,
    noise: float,
    specks: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (width, height), background)
    draw = ImageDraw.Draw(canvas)
    points = [tuple(rng.uniform(0, (width, height))) for _ in range(rng.integers(2, 6))]
    draw.line(points, fill=ink, width=stroke)
    for _ in range(specks):
        left, top = rng.uniform(0, (width, height))
        draw.ellipse((left, top, left + 3, top + 3), fill=ink)
    pixels = np.asarray(canvas, np.float64) + rng.normal(0, noise, (height, width))
    pixels = np.clip(pixels, 0, 255)
    if mode == "F":
        image = Image.fromarray((pixels * rng.uniform(-1e6, 1e6)).astype(np.float32), mode="F")
    elif mode == "I;16":
        image = Image.fromarray((pixels * 257).astype(np.uint16))
    elif mode == "RGBA":
        alpha = rng.integers(0, 256, (height, width), dtype=np.uint8)
        grey = pixels.astype(np.uint8)
        image = Image.fromarray(np.stack([grey, grey, grey, alpha], axis=-1), mode="RGBA")
    else:
        image = Image.fromarray(pixels.astype(np.uint8)).convert(mode)
    check(image)
