"""Turning any decoded digit image into the 28x28 array the models were trained on.

The steps, one function each: orient by EXIF and flatten to grey in [0, 1] (alpha composited
so that transparent = background); decide the polarity and make the ink bright; subtract a
smooth estimate of the background (uneven light); threshold with Otsu, keeping the grey
anti-aliasing; remove ruled lines and specks away from the digit; then normalise exactly the
way MNIST was made: crop to the ink, fit into 20x20 keeping the aspect ratio, place in 28x28
with the centre of mass at the centre.
"""

from __future__ import annotations

import base64
import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps

from serve.errors import BlankImage

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
#: A row (column) this full of ink, reaching both borders, thin, and much longer than the
#: rest of the ink is a ruled line (a lone line is left alone: it is a 1).
LINE_FILL = 0.85
LINE_BORDER = 0.05
LINE_MAX_THICKNESS = 0.04
LINE_MIN_OVERHANG = 0.45
#: Components of ink this close to the digit (fraction of its longer side) belong to it;
#: three times as far for large ones (30% of the digit's area), a quarter for specks (<5%).
NEAR_FRACTION = 0.2
#: Stroke widths (twice area over perimeter, in pixels of the 20x20 box) of MNIST digits:
#: about its 2nd and 99th percentiles bound the range left alone; thinner strokes are
#: thickened to the median, thicker ones thinned to the 90th percentile.
STROKE_MIN = 1.2
STROKE_MAX = 3.4
STROKE_TARGET = 1.9
STROKE_THINNED = 2.6

_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


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


def to_grey(image: Image.Image) -> np.ndarray:
    """Any Pillow image (any mode, size, alpha) as a float32 grey array in [0, 1],
    box-reduced to at most WORK_SIDE pixels on its longer side."""
    if image.mode in _WIDE_MODES:
        return _stretched(np.asarray(_reduced(image.convert("F"))))
    if image.has_transparency_data:
        rgba = image.convert("LA") if image.mode == "La" else image.convert("RGBA")
        pair = np.asarray(_reduced(rgba.convert("LA")), dtype=np.float32) / 255.0
        return _composited(pair[..., 0], pair[..., 1])
    if image.mode == "LAB":
        image = image.convert("RGB")
    return np.asarray(_reduced(image.convert("L")), dtype=np.float32) / 255.0


def _mean2(values: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 neighbourhood (a cheap denoising); tiny arrays are returned as-is."""
    if min(values.shape) < 2:
        return values
    return (values[:-1, :-1] + values[1:, :-1] + values[:-1, 1:] + values[1:, 1:]) / 4


def _quantile(values: np.ndarray, fraction: float) -> np.ndarray:
    """The element at ``fraction`` of the values sorted along the last axis (no
    interpolation: a partition, not a sort)."""
    index = int(fraction * (values.shape[-1] - 1))
    return np.partition(values, index, axis=-1)[..., index]


def ink_bright(grey: np.ndarray) -> np.ndarray:
    """Return ``grey`` with the ink bright: the background is the median, and the ink is
    the extreme (of a denoised copy) that lies further from it."""
    smooth = _mean2(grey)
    background = float(_quantile(grey.ravel(), 0.5))
    dark_ink = background - float(smooth.min()) > float(smooth.max()) - background
    return 1.0 - grey if dark_ink else grey


def _linear_weights(out_size: int, in_size: int) -> np.ndarray:
    """``[out_size, in_size]`` matrix of linear interpolation weights (pixel centres
    aligned, edges clamped)."""
    centres = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    fraction = centres - low
    weights = np.zeros((out_size, in_size))
    np.add.at(weights, (np.arange(out_size), low), 1 - fraction)
    np.add.at(weights, (np.arange(out_size), high), fraction)
    return weights


def _grid_resize(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a small grid to ``height`` x ``width`` (float32)."""
    if float(grid.max()) == float(grid.min()):
        return np.full((height, width), grid.flat[0], dtype=np.float32)
    rows = _linear_weights(height, grid.shape[0])
    columns = _linear_weights(width, grid.shape[1])
    return (rows @ grid @ columns.T).astype(np.float32)


def _opening(grid: np.ndarray, radius: int) -> np.ndarray:
    """Grey opening by reconstruction of a small grid: erode with a (2r+1)^2 window, then
    grow back under the grid. Bright bumps narrower than the window (ink) are flattened;
    ramps and plateaus (light gradients, vignetting, shadows) keep their exact height."""
    size = 2 * radius + 1
    marker = _min_filter(grid, size)
    while True:
        grown = np.minimum(_max_filter(marker, 3), grid)
        if np.array_equal(grown, marker):
            return marker
        marker = grown


def background(bright: np.ndarray) -> np.ndarray:
    """Smooth estimate of the background of an ink-bright image: the 20th percentile of
    each block of a grid, opened so that blocks full of ink do not count, bilinearly
    interpolated back to full size."""
    height, width = bright.shape
    block = max(4, math.ceil(max(height, width) / BACKGROUND_BLOCKS))
    grid_height, grid_width = math.ceil(height / block), math.ceil(width / block)
    padded = np.pad(
        bright, ((0, grid_height * block - height), (0, grid_width * block - width)), "edge"
    )
    blocks = padded.reshape(grid_height, block, grid_width, block).transpose(0, 2, 1, 3)
    level = _quantile(blocks.reshape(grid_height, grid_width, -1), 0.2)
    return _grid_resize(_opening(level, BACKGROUND_OPENING), height, width)


def otsu(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold of ``values`` (which lie in [0, 1])."""
    indices = np.clip((values * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(indices.ravel(), minlength=bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def ink_levels(bright: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] of an ink-bright image: background subtracted, contrast
    normalised, pixels under half the Otsu threshold zeroed (grey edges kept).
    Raises BlankImage when the ink does not stand out from the background."""
    signal = np.clip(bright - background(bright), 0.0, 1.0)
    peak = float(_mean2(signal).max())
    if peak < MIN_CONTRAST / 2 or float(signal.max()) < MIN_CONTRAST:
        raise BlankImage("no ink found: the image is blank or uniform")
    normalised = signal / float(signal.max())
    threshold = min(max(otsu(normalised), 0.2), 0.6)
    strokes = normalised[normalised > threshold]
    saturation = float(_quantile(strokes, 0.75)) if strokes.size else 1.0
    floor = threshold / 2
    levels = (normalised - floor) / max(saturation - floor, 1e-6)
    return np.clip(levels, 0.0, 1.0).astype(np.float32)


def _line_bands(fill: np.ndarray, max_thickness: int) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` of consecutive indices whose fill is at least LINE_FILL, at
    most ``max_thickness`` long, widened by a fainter neighbour (the line's soft edge)."""
    full = np.concatenate([[False], fill >= LINE_FILL, [False]])
    changes = np.flatnonzero(np.diff(full.astype(np.int8)))
    bands = []
    for start, end in zip(changes[::2].tolist(), changes[1::2].tolist(), strict=True):
        if end - start > max_thickness:
            continue
        if start > 0 and fill[start - 1] >= LINE_FILL / 3:
            start -= 1
        if end < fill.size and fill[end] >= LINE_FILL / 3:
            end += 1
        bands.append((start, end))
    return bands


def _band_rows(bands: list[tuple[int, int]], length: int) -> np.ndarray:
    """Boolean index of the rows covered by ``bands``."""
    covered = np.zeros(length, dtype=bool)
    for start, end in bands:
        covered[start:end] = True
    return covered


def _clear_row_bands(
    mask: np.ndarray, bands: list[tuple[int, int]], rest_columns: np.ndarray
) -> np.ndarray:
    """Clear the horizontal bands that reach both borders and overhang the rest of the ink,
    keeping the pixels where a stroke crosses the line (ink directly above and below)."""
    height, width = mask.shape
    cleaned = mask.copy()
    for start, end in bands:
        line_columns = np.flatnonzero(mask[start:end].any(axis=0))
        if line_columns.size == 0:
            continue
        reaches_borders = (
            line_columns[0] <= LINE_BORDER * width
            and line_columns[-1] >= (1 - LINE_BORDER) * width - 1
        )
        overhang = max(0, rest_columns[0] - line_columns[0]) + max(
            0, line_columns[-1] - rest_columns[-1]
        )
        if not reaches_borders or overhang < LINE_MIN_OVERHANG * width:
            continue
        above = mask[start - 1] if start > 0 else np.zeros(width, dtype=bool)
        below = mask[end] if end < height else np.zeros(width, dtype=bool)
        crossing = above & below
        cleaned[start:end] &= crossing | np.roll(crossing, 1) | np.roll(crossing, -1)
    return cleaned


def remove_ruled_lines(mask: np.ndarray) -> np.ndarray:
    """Clear thin lines spanning the image (ruled or squared paper, a margin line) from a
    boolean ink mask. One lone line and nothing else is kept: it is a 1."""
    height, width = mask.shape
    row_bands = _line_bands(mask.mean(axis=1), max(2, round(LINE_MAX_THICKNESS * height)))
    column_bands = _line_bands(mask.mean(axis=0), max(2, round(LINE_MAX_THICKNESS * width)))
    if not row_bands and not column_bands:
        return mask
    rest = (
        mask & ~_band_rows(row_bands, height)[:, None] & ~_band_rows(column_bands, width)[None, :]
    )
    if not rest.any():
        return mask if len(row_bands) + len(column_bands) == 1 else np.zeros_like(mask)
    rest_rows, rest_columns = np.flatnonzero(rest.any(axis=1)), np.flatnonzero(rest.any(axis=0))
    cleaned = _clear_row_bands(mask, row_bands, rest_columns)
    return _clear_row_bands(cleaned.T, column_bands, rest_rows).T


def _run_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of ``mask`` as horizontal runs: each run's row, start, end
    (exclusive) and component label (labels are run indices, not consecutive)."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    rows, starts = np.nonzero(steps == 1)
    ends = np.nonzero(steps == -1)[1]
    stride = width + 2
    start_keys, end_keys = rows * stride + starts, rows * stride + ends
    # Runs of the next row that touch run i (8-connected) have start <= end_i, end >= start_i.
    first = np.searchsorted(end_keys, (rows + 1) * stride + starts, side="left")
    last = np.searchsorted(start_keys, (rows + 1) * stride + ends, side="right")
    counts = np.maximum(last - first, 0)
    left = np.repeat(np.arange(rows.size), counts)
    right = (
        np.repeat(first, counts)
        + np.arange(counts.sum())
        - np.repeat(np.cumsum(counts) - counts, counts)
    )
    labels = np.arange(rows.size)
    while True:
        left_labels, right_labels = labels[left], labels[right]
        differ = left_labels != right_labels
        if not differ.any():
            break
        np.minimum.at(
            labels,
            np.maximum(left_labels[differ], right_labels[differ]),
            np.minimum(left_labels[differ], right_labels[differ]),
        )
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
    return rows, starts, ends, labels


def keep_digit(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component of ink and the components near it (or large);
    drop isolated specks and dust far from the digit."""
    rows, starts, ends, labels = _run_components(mask)
    if rows.size == 0 or (labels == labels[0]).all():
        return mask
    count = rows.size
    area = np.bincount(labels, weights=ends - starts, minlength=count)
    top = np.full(count, mask.shape[0]), np.full(count, mask.shape[1])
    bottom = np.full(count, -1), np.full(count, -1)
    np.minimum.at(top[0], labels, rows)
    np.minimum.at(top[1], labels, starts)
    np.maximum.at(bottom[0], labels, rows + 1)
    np.maximum.at(bottom[1], labels, ends)
    roots = np.flatnonzero(area)
    main = roots[np.argmax(area[roots])]
    kept = np.zeros(count, dtype=bool)
    kept[main] = True
    while True:
        box_top = (top[0][kept].min(), top[1][kept].min())
        box_bottom = (bottom[0][kept].max(), bottom[1][kept].max())
        reach = NEAR_FRACTION * max(box_bottom[0] - box_top[0], box_bottom[1] - box_top[1])
        gap = np.maximum(
            np.maximum(box_top[0] - bottom[0][roots], top[0][roots] - box_bottom[0]),
            np.maximum(box_top[1] - bottom[1][roots], top[1][roots] - box_bottom[1]),
        )
        share = area[roots] / area[main]
        near = gap <= reach * np.where(share >= 0.3, 3.0, np.where(share >= 0.05, 1.0, 0.25))
        joining = roots[near & ~kept[roots]]
        if joining.size == 0:
            break
        kept[joining] = True
    keep = np.zeros(mask.shape, dtype=bool)
    for row, start, end in zip(
        rows[kept[labels]].tolist(),
        starts[kept[labels]].tolist(),
        ends[kept[labels]].tolist(),
        strict=True,
    ):
        keep[row, start:end] = True
    return keep


def _slide(values: np.ndarray, size: int, axis: int, combine: np.ufunc) -> np.ndarray:
    """Combine (maximum or minimum) each element with its neighbours along ``axis`` in a
    window of ``size`` (centred, the extra one after); the window stops at the edges."""
    before, after = (size - 1) // 2, size // 2
    result = values.copy()
    moved = np.moveaxis(result, axis, 0)
    source = np.moveaxis(values, axis, 0)
    for shift in range(1, min(after, source.shape[0] - 1) + 1):
        combine(moved[:-shift], source[shift:], out=moved[:-shift])
    for shift in range(1, min(before, source.shape[0] - 1) + 1):
        combine(moved[shift:], source[:-shift], out=moved[shift:])
    return result


def _max_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` maximum filter (a dilation); the window stops at the edges."""
    return _slide(_slide(values, size, 0, np.maximum), size, 1, np.maximum)


def _min_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` minimum filter (an erosion); the window stops at the edges."""
    return _slide(_slide(values, size, 0, np.minimum), size, 1, np.minimum)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a boolean mask: twice its area over its perimeter."""
    padded = np.pad(mask, 1)
    perimeter = int(np.count_nonzero(padded[1:] != padded[:-1])) + int(
        np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    )
    return 2.0 * float(mask.sum()) / max(perimeter, 1)


def _tight(values: np.ndarray) -> np.ndarray:
    """Crop a 2-D array to the bounding box of its non-zero values."""
    rows, columns = np.flatnonzero(values.any(axis=1)), np.flatnonzero(values.any(axis=0))
    if rows.size == 0:
        return values
    return values[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def normalise_strokes(patch: np.ndarray) -> np.ndarray:
    """Thicken hair-thin strokes, or thin very thick ones, towards MNIST's pen width,
    judged at the scale the digit will have in the 20x20 box; returns the re-cropped patch."""
    scale = BOX_SIDE / max(patch.shape)
    width = stroke_width(patch > 0.5) * scale
    if width < STROKE_MIN:
        size = round((STROKE_TARGET - width) / scale) + 1
        return _tight(_max_filter(np.pad(patch, size), size)) if size > 1 else patch
    if width > STROKE_MAX:
        size = round((width - STROKE_THINNED) / scale) + 1
        thinned = _min_filter(np.pad(patch, 1), size)[1:-1, 1:-1] if size > 1 else patch
        return _tight(thinned) if thinned.max() > 0.5 else patch
    return patch


def _fit_box(patch: np.ndarray) -> np.ndarray:
    """Resize the ink patch so its longer side is BOX_SIDE, keeping the aspect ratio,
    with area averaging when shrinking (as MNIST's anti-aliased normalisation)."""
    height, width = patch.shape
    scale = BOX_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrinking = scale < 1
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    resized = Image.fromarray(patch, mode="F").resize(size, resample)
    return np.clip(np.asarray(resized), 0.0, 1.0)


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
    """Top, left, bottom, right (exclusive) of the True pixels of a non-empty mask."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1


def digit_ink(image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The digit's ink levels (in [0, 1], zero off the digit) at working resolution, and
    its bounds; raises BlankImage when there is no digit."""
    grey = to_grey(image)
    levels = ink_levels(ink_bright(grey))
    mask = keep_digit(remove_ruled_lines(levels > 0))
    if not mask.any():
        raise BlankImage("no digit found: only ruled lines")
    top, left, bottom, right = _bounds(mask)
    if max(bottom - top, right - left) < max(2, MIN_INK_SPAN * max(grey.shape)):
        raise BlankImage("no digit found: only specks, too small to read")
    return np.where(mask, levels, 0.0).astype(np.float32), (top, left, bottom, right)


def _zoomed(image: Image.Image, bounds: tuple[int, int, int, int]) -> np.ndarray | None:
    """For a digit small in a large, reduced image: its ink from a full-resolution crop
    around ``bounds`` (working coordinates), or None when that does not apply."""
    factor = _reduction(image)
    top, left, bottom, right = bounds
    span = max(bottom - top, right - left)
    if factor == 1 or span > WORK_SIDE // 4:
        return None
    margin = span // 2 + 1
    region = (
        max(0, (left - margin) * factor),
        max(0, (top - margin) * factor),
        min(image.width, (right + margin) * factor),
        min(image.height, (bottom + margin) * factor),
    )
    try:
        ink, (top, left, bottom, right) = digit_ink(image.crop(region))
    except BlankImage:
        return None
    return ink[top:bottom, left:right]


def to_mnist(image: Image.Image) -> np.ndarray:
    """Return the image's digit as a ``[28, 28]`` float32 array in [0, 1], white on black,
    normalised the way MNIST was made. Raises BlankImage when there is no ink."""
    image = _oriented(image)
    ink, (top, left, bottom, right) = digit_ink(image)
    patch = _zoomed(image, (top, left, bottom, right))
    if patch is None:
        patch = ink[top:bottom, left:right]
    digit = _fit_box(normalise_strokes(patch))
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
