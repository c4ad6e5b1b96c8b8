"""Cleaning a boolean ink mask: clear ruled lines (ruled or squared paper, a margin line)
and keep the digit, dropping the specks and dust away from it."""

from __future__ import annotations

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
