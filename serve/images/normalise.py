"""Turning any decoded digit image into the 28x28 array the models were trained on.

The steps: orient by EXIF and flatten to grey in [0, 1] (alpha composited so that
transparent = background); decide the polarity and make the ink bright; subtract a smooth
estimate of the background (uneven light); threshold with Otsu, keeping the grey
anti-aliasing; remove ruled lines and specks away from the digit (serve.images.ink); bring the
stroke width towards MNIST's (serve.images.strokes); then normalise exactly the way MNIST was made:
crop to the ink, fit into 20x20 keeping the aspect ratio, place in 28x28 with the centre of
mass at the centre.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps

from serve.errors import BlankImage
from serve.images.ink import keep_digit, remove_ruled_lines
from serve.images.morphology import opening
from serve.images.strokes import normalise_strokes

MNIST_SIDE = 28
#: MNIST fits each digit into a 20x20 box inside the 28x28 frame.
BOX_SIDE = 20
#: Images are box-reduced until their longer side is at most this many pixels.
WORK_SIDE = 320
#: The ink must differ from the background by this fraction of the full range.
MIN_CONTRAST = 0.12
#: The kept ink must span at least this fraction of the image's longer side (and 2 px).
MIN_INK_SPAN = 0.01
#: Background is estimated on a grid of about this many blocks per side, opened with a
#: window of 2r+1 blocks (wider than any pen stroke).
BACKGROUND_BLOCKS = 24
BACKGROUND_OPENING = 2
#: A digit spanning at most this many working pixels (under twice the 20x20 box) is read
#: again from a sharper copy, in which it spans at least ZOOM_TARGET pixels.
ZOOM_SPAN = WORK_SIDE // 8
ZOOM_TARGET = WORK_SIDE // 4
#: Grey levels k / 255 as float32, as an 8-bit image converts to [0, 1].
_LEVELS = np.arange(256, dtype=np.float32) / 255.0
#: EXIF orientation tag and, for each value, how to turn a stored array upright.
_ORIENTATION = 0x0112
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda values: values[:, ::-1],
    3: lambda values: values[::-1, ::-1],
    4: lambda values: values[::-1],
    5: lambda values: values.T,
    6: lambda values: np.rot90(values, -1),
    7: lambda values: values.T[::-1, ::-1],
    8: lambda values: np.rot90(values, 1),
}

_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1, upright, when absent or unreadable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return int(image.getexif().get(_ORIENTATION, 1))
        except Exception:
            return 1


def upright(values: np.ndarray, orientation: int) -> np.ndarray:
    """A stored 2-D array turned as EXIF ``orientation`` says (unknown values: as stored)."""
    turn = _UPRIGHT.get(orientation)
    return values if turn is None else np.ascontiguousarray(turn(values))


def _oriented(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block leaves the image as it is,
    silently (Pillow would warn about it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ImageOps.exif_transpose(image)
        except Exception:
            return image


def _reduction(image: Image.Image) -> int:
    """The whole factor that brings the image's longer side to at most WORK_SIDE."""
    return math.ceil(max(image.size) / WORK_SIDE)


def _reduced(image: Image.Image) -> Image.Image:
    """Box-reduce so the longer side is at most WORK_SIDE (a no-op for small images)."""
    factor = _reduction(image)
    return image.reduce(factor) if factor > 1 else image


def _stretched(values: np.ndarray) -> np.ndarray:
    """Map an array of any numeric range to [0, 1]; non-finite values become the median.

    The range is stretched to full contrast, but no more than MIN_CONTRAST of the nominal
    range (1, 255 or 65535, whichever holds the values) is stretched to 1, so that faint
    noise on a uniform 16-bit or float image stays faint (and blank)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        fill = float(np.median(values[finite])) if finite.any() else 0.0
        values = np.where(finite, values, fill)
    low, high = float(values.min()), float(values.max())
    spread = high - low
    if spread <= 0 or not math.isfinite(spread):
        return np.zeros(values.shape, np.float32)
    nominal = next((top for top in (1.0, 255.0, 65535.0) if low >= 0 and high <= top), spread)
    return ((values - low) / max(spread, MIN_CONTRAST * nominal)).astype(np.float32)


def _composited(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite grey over a background so that transparent pixels read as background.

    Mostly transparent (a canvas export): the background is the opposite of the strokes.
    Mostly opaque: transparent holes take the colour of the opaque background.
    """
    opaque = alpha >= 0.5
    weight = float(alpha.sum())
    if weight == 0:
        return np.zeros_like(grey)
    if opaque.mean() < 0.5:
        stroke = float((grey * alpha).sum()) / weight
        background = 1.0 if stroke < 0.5 else 0.0
    else:
        background = float(np.median(grey[opaque]))
    return grey * alpha + background * (1.0 - alpha)


def _stored_grey(image: Image.Image) -> np.ndarray:
    """Any Pillow image (any mode, size, alpha) as a grey array, as stored, box-reduced to
    at most WORK_SIDE pixels on its longer side: uint8 levels for an 8-bit image without
    alpha, float32 in [0, 1] for the others."""
    if image.mode in _WIDE_MODES:
        return _stretched(np.asarray(_reduced(image.convert("F"))))
    if image.has_transparency_data:
        rgba = image.convert("LA") if image.mode == "La" else image.convert("RGBA")
        pair = np.asarray(_reduced(rgba.convert("LA")), dtype=np.float32) / 255.0
        return _composited(pair[..., 0], pair[..., 1])
    if image.mode == "LAB":
        image = image.convert("RGB")
    return np.asarray(_reduced(image if image.mode == "L" else image.convert("L")))


def _unit(grey: np.ndarray) -> np.ndarray:
    """A grey array as float32 in [0, 1] (uint8 levels divided by 255)."""
    return np.asarray(grey, dtype=np.float32) / 255.0 if grey.dtype == np.uint8 else grey


def _grey(image: Image.Image) -> np.ndarray:
    """Any Pillow image (any mode, size, alpha) as a float32 grey array in [0, 1], as
    stored, box-reduced to at most WORK_SIDE pixels on its longer side."""
    return _unit(_stored_grey(image))


def to_grey(image: Image.Image) -> np.ndarray:
    """Any Pillow image (any mode, size, alpha) as a float32 grey array in [0, 1],
    box-reduced to at most WORK_SIDE pixels on its longer side, then turned upright as its
    EXIF orientation says (on the reduced array: the full image is never copied)."""
    return _unit(upright(_stored_grey(image), _orientation(image)))


def _mean2(values: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 neighbourhood (a cheap denoising); tiny arrays are returned as-is."""
    if min(values.shape) < 2:
        return values
    return cv2.blur(values, (2, 2), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[:-1, :-1]


def _quantile(values: np.ndarray, fraction: float) -> float:
    """The element at ``fraction`` of a 1-D array's values sorted (no interpolation: a
    partition, not a sort)."""
    index = int(fraction * (values.size - 1))
    return float(np.partition(values, index)[index])


def _block_quantile(blocks: np.ndarray, fraction: float) -> np.ndarray:
    """The element at ``fraction`` of the values sorted along the last axis (no
    interpolation)."""
    index = int(fraction * (blocks.shape[-1] - 1))
    return np.sort(blocks, axis=-1)[..., index]


def grey_quantile(values: np.ndarray, fraction: float) -> float:
    """The element at ``fraction`` of the sorted values (no interpolation) of a float32
    array in [0, 1], to the nearest of the 256 grey levels k / 255: exact for an 8-bit
    image, from a histogram of the levels."""
    levels = cv2.convertScaleAbs(values, alpha=255)
    counts = np.cumsum(cv2.calcHist([levels], [0], None, [256], [0, 256]).ravel())
    index = int(fraction * (values.size - 1))
    return float(_LEVELS[int(np.searchsorted(counts, index, side="right"))])


def _clip(values: np.ndarray, low: float, high: float | None) -> np.ndarray:
    """Clip a float32 array to [low, high] (no upper bound for None), in place."""
    if high is not None:
        cv2.threshold(values, high, 0, cv2.THRESH_TRUNC, dst=values)
    cv2.threshold(values, low, 0, cv2.THRESH_TOZERO, dst=values)
    return values


def _extremes(values: np.ndarray) -> tuple[float, float]:
    """The least and the greatest value of a 2-D array."""
    least, greatest, _, _ = cv2.minMaxLoc(values)
    return least, greatest


def ink_bright(grey: np.ndarray) -> np.ndarray:
    """Return ``grey`` with the ink bright: the background is the median, and the ink is
    the extreme (of a denoised copy) that lies further from it."""
    darkest, lightest = _extremes(_mean2(grey))
    background = grey_quantile(grey, 0.5)
    dark_ink = background - darkest > lightest - background
    return 1.0 - grey if dark_ink else grey


def _grid_resize(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a small grid to ``height`` x ``width`` (float32; pixel centres
    aligned, edges clamped)."""
    least, greatest = _extremes(grid)
    if least == greatest:
        return np.full((height, width), grid.flat[0], dtype=np.float32)
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def background(bright: np.ndarray) -> np.ndarray:
    """Smooth estimate of the background of an ink-bright image: the 20th percentile of
    each block of a grid, opened so that blocks full of ink do not count, bilinearly
    interpolated back to full size."""
    height, width = bright.shape
    block = max(4, math.ceil(max(height, width) / BACKGROUND_BLOCKS))
    grid_height, grid_width = math.ceil(height / block), math.ceil(width / block)
    padded = cv2.copyMakeBorder(
        bright, 0, grid_height * block - height, 0, grid_width * block - width, cv2.BORDER_REPLICATE
    )
    blocks = padded.reshape(grid_height, block, grid_width, block).transpose(0, 2, 1, 3)
    level = _block_quantile(blocks.reshape(grid_height, grid_width, -1), 0.2)
    return _grid_resize(opening(level, BACKGROUND_OPENING), height, width)


#: Otsu's threshold is chosen among this many equal bins of [0, 1].
OTSU_BINS = 64


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of a float32 array whose values lie in [0, 1], among OTSU_BINS
    equal bins (value 1 in the last): the upper edge of the last bin of the dark class."""
    bins = (values * OTSU_BINS).astype(np.uint8)
    cv2.threshold(bins, OTSU_BINS - 1, 0, cv2.THRESH_TRUNC, dst=bins)
    last_dark, _ = cv2.threshold(bins, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return (last_dark + 1) / OTSU_BINS


def ink_levels(bright: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] of an ink-bright image: background subtracted, contrast
    normalised, pixels under half the Otsu threshold zeroed (grey edges kept).
    Raises BlankImage when the ink does not stand out from the background."""
    signal = background(bright)
    np.subtract(bright, signal, out=signal)
    _clip(signal, 0.0, None)
    _, peak = _extremes(_mean2(signal))
    _, highest = _extremes(signal)
    if peak < MIN_CONTRAST / 2 or highest < MIN_CONTRAST:
        raise BlankImage("no ink found: the image is blank or uniform")
    normalised = np.divide(signal, highest, out=signal)
    threshold = min(max(otsu(normalised), 0.2), 0.6)
    strokes = normalised[normalised > threshold]
    saturation = _quantile(strokes, 0.75) if strokes.size else 1.0
    floor = threshold / 2
    levels = np.subtract(normalised, floor, out=normalised)
    levels /= max(saturation - floor, 1e-6)
    return _clip(levels, 0.0, 1.0)


def _fit_box(patch: np.ndarray) -> np.ndarray:
    """Resize the ink patch so its longer side is BOX_SIDE, keeping the aspect ratio,
    with area averaging when shrinking (as MNIST's anti-aliased normalisation)."""
    height, width = patch.shape
    scale = BOX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        resized = patch
    else:
        resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
        resized = np.asarray(Image.fromarray(patch, mode="F").resize(size, resample))
    return np.minimum(np.maximum(resized, 0.0), 1.0)


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place ``digit`` (at most 20x20) in a 28x28 frame with its centre of mass at the
    centre, shifted by whole pixels and kept inside the frame."""
    height, width = digit.shape
    total = float(digit.sum())
    centre_row = float((digit.sum(axis=1) * np.arange(height)).sum()) / total
    centre_column = float((digit.sum(axis=0) * np.arange(width)).sum()) / total
    middle = MNIST_SIDE / 2
    top = min(max(round(middle - centre_row), 0), MNIST_SIDE - height)
    left = min(max(round(middle - centre_column), 0), MNIST_SIDE - width)
    frame = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    frame[top : top + height, left : left + width] = digit
    return frame


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Top, left, bottom, right (exclusive) of the True pixels of a boolean mask (all
    zero when there are none)."""
    left, top, width, height = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return top, left, top + height, left + width


def digit_ink(grey: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The digit's ink levels (in [0, 1], zero off the digit) of a grey working-size array,
    cropped to the digit, and its bounds in that array; raises BlankImage when there is
    no digit."""
    levels = ink_levels(ink_bright(grey))
    mask = keep_digit(remove_ruled_lines(levels > 0))
    top, left, bottom, right = _bounds(mask)
    if bottom == top:
        raise BlankImage("no digit found: only ruled lines")
    if max(bottom - top, right - left) < max(2, MIN_INK_SPAN * max(grey.shape)):
        raise BlankImage("no digit found: only specks, too small to read")
    return levels[top:bottom, left:right] * mask[top:bottom, left:right], (top, left, bottom, right)


#: Decodes the upload again with its longer side at least the given number of pixels.
Redecode = Callable[[int], Image.Image]


def _sharper(
    image: Image.Image, working_side: int, span: int, redecode: Redecode | None
) -> Image.Image:
    """The copy of the image to zoom into: the image itself, or, when it was decoded
    reduced and the digit would span under ZOOM_TARGET pixels in it, a sharper decode."""
    full_side = max(image.info.get("full_size", image.size))
    if redecode is None or full_side <= max(image.size):
        return image
    if span * max(image.size) >= ZOOM_TARGET * working_side:
        return image
    return redecode(math.ceil(working_side * ZOOM_TARGET / span))


def _zoomed(
    image: Image.Image,
    working: tuple[int, int],
    bounds: tuple[int, int, int, int],
    redecode: Redecode | None,
) -> np.ndarray | None:
    """For a digit small in a large, reduced image: its ink from a sharper crop around
    ``bounds`` (upright working coordinates), or None when that does not apply."""
    top, left, bottom, right = bounds
    span = max(bottom - top, right - left)
    full_side = max(image.info.get("full_size", image.size))
    if full_side <= max(working) or span > ZOOM_SPAN:
        return None
    source = _oriented(_sharper(image, max(working), span, redecode))
    scale = _reduction(image) * max(source.size) / max(image.size)
    if scale <= 1:
        return None
    margin = span // 2 + 1
    region = (
        max(0, math.floor((left - margin) * scale)),
        max(0, math.floor((top - margin) * scale)),
        min(source.width, math.ceil((right + margin) * scale)),
        min(source.height, math.ceil((bottom + margin) * scale)),
    )
    try:
        patch, _ = digit_ink(_grey(source.crop(region)))
    except BlankImage:
        return None
    return patch


def to_mnist(image: Image.Image, redecode: Redecode | None = None) -> np.ndarray:
    """Return the image's digit as a ``[28, 28]`` float32 array in [0, 1], white on black,
    normalised the way MNIST was made. ``redecode`` (optional) decodes the upload again at
    a larger size, for a small digit in an image that was decoded reduced. Raises
    BlankImage when there is no ink."""
    grey = to_grey(image)
    patch, bounds = digit_ink(grey)
    zoomed = _zoomed(image, grey.shape, bounds, redecode)
    digit = _fit_box(normalise_strokes(patch if zoomed is None else zoomed, BOX_SIDE))
    if float(digit.sum()) <= 0:
        raise BlankImage("no digit found: the ink vanished when scaled to 20x20")
    return centre_by_mass(digit)


def to_png_data_url(array: np.ndarray) -> str:
    """Encode a 2-D array in [0, 1] (the 28x28 a model saw) as a ``data:image/png`` URL."""
    pixels = np.clip(np.nan_to_num(np.asarray(array, dtype=np.float32)), 0.0, 1.0)
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
