"""Cleaning a boolean ink mask: clear ruled lines (ruled or squared paper, a margin line)
and keep the digit, dropping the specks and dust away from it."""

from __future__ import annotations

import cv2
import numpy as np

#: A row (column) this full of ink, reaching both borders, thin, and much longer than the
#: rest of the ink is a ruled line (a lone line is left alone: it is a 1).
LINE_FILL = 0.85
LINE_BORDER = 0.05
LINE_MAX_THICKNESS = 0.04
LINE_MIN_OVERHANG = 0.45
#: Components of ink this close to the digit (fraction of its longer side) belong to it;
#: three times as far for large ones (30% of the digit's area), a quarter for specks (<5%).
NEAR_FRACTION = 0.2


def _line_bands(fill: np.ndarray, max_thickness: int) -> list[tuple[int, int]]:
    """Runs ``[start, end)`` of consecutive indices whose fill is at least LINE_FILL, at
    most ``max_thickness`` long, widened by a fainter neighbour (the line's soft edge)."""
    if fill.max() < LINE_FILL:
        return []
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
    pixels = np.ascontiguousarray(mask).view(np.uint8)
    row_fill, column_fill = (
        cv2.reduce(pixels, axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() / length
        for axis, length in ((1, width), (0, height))
    )
    row_bands = _line_bands(row_fill, max(2, round(LINE_MAX_THICKNESS * height)))
    column_bands = _line_bands(column_fill, max(2, round(LINE_MAX_THICKNESS * width)))
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


def keep_digit(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component of ink (8-connected) and the components near
    it (or large); drop isolated specks and dust far from the digit. The components are
    labelled within the bounding box of the ink only."""
    pixels = np.ascontiguousarray(mask).view(np.uint8)
    first_column, first_row, columns, rows = cv2.boundingRect(pixels)
    window = (slice(first_row, first_row + rows), slice(first_column, first_column + columns))
    count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        pixels[window], 8, cv2.CV_32S, cv2.CCL_GRANA
    )
    if count <= 2:
        return mask
    left, top = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    right, bottom = left + stats[1:, cv2.CC_STAT_WIDTH], top + stats[1:, cv2.CC_STAT_HEIGHT]
    area = stats[1:, cv2.CC_STAT_AREA]
    main = int(np.argmax(area))
    share = area / area[main]
    weight = np.where(share >= 0.3, 3.0, np.where(share >= 0.05, 1.0, 0.25))
    kept = np.zeros(count - 1, dtype=bool)
    kept[main] = True
    while True:
        box_top, box_left = top[kept].min(), left[kept].min()
        box_bottom, box_right = bottom[kept].max(), right[kept].max()
        reach = NEAR_FRACTION * max(box_bottom - box_top, box_right - box_left)
        gap = np.maximum(
            np.maximum(box_top - bottom, top - box_bottom),
            np.maximum(box_left - right, left - box_right),
        )
        joining = (gap <= reach * weight) & ~kept
        if not joining.any():
            break
        kept |= joining
    digit = np.zeros(mask.shape, dtype=bool)
    digit[window] = np.concatenate([[False], kept]).take(np.asarray(labels))
    return digit
