"""Sliding-window morphology on small numpy arrays: minimum and maximum filters (erosion
and dilation) and grey opening by reconstruction."""

from __future__ import annotations

import numpy as np


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


def max_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` maximum filter (a dilation); the window stops at the edges."""
    return _slide(_slide(values, size, 0, np.maximum), size, 1, np.maximum)


def min_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` minimum filter (an erosion); the window stops at the edges."""
    return _slide(_slide(values, size, 0, np.minimum), size, 1, np.minimum)


def opening(grid: np.ndarray, radius: int) -> np.ndarray:
    """Grey opening by reconstruction of a small grid: erode with a (2r+1)^2 window, then
    grow back under the grid. Bright bumps narrower than the window (ink) are flattened;
    ramps and plateaus (light gradients, vignetting, shadows) keep their exact height."""
    size = 2 * radius + 1
    marker = min_filter(grid, size)
    while True:
        grown = np.minimum(max_filter(marker, 3), grid)
        if np.array_equal(grown, marker):
            return marker
        marker = grown
