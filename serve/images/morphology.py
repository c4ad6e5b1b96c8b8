"""Morphology on OpenCV: minimum and maximum filters (erosion and dilation) and grey
opening by reconstruction. OpenCV runs on one thread: a worker has one core."""

from __future__ import annotations

import cv2
import numpy as np

cv2.setNumThreads(1)


def _window(size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A ``size`` x ``size`` square kernel and its anchor (centred, the extra one after)."""
    before = (size - 1) // 2
    return np.ones((size, size), np.uint8), (before, before)


def max_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` maximum filter (a dilation); the window stops at the edges."""
    kernel, anchor = _window(size)
    return cv2.dilate(values, kernel, anchor=anchor)


def min_filter(values: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` minimum filter (an erosion); the window stops at the edges."""
    kernel, anchor = _window(size)
    return cv2.erode(values, kernel, anchor=anchor)


def opening(grid: np.ndarray, radius: int) -> np.ndarray:
    """Grey opening by reconstruction of a small grid: erode with a (2r+1)^2 window, then
    grow back under the grid. Bright bumps narrower than the window (ink) are flattened;
    ramps and plateaus (light gradients, vignetting, shadows) keep their exact height."""
    marker = min_filter(grid, 2 * radius + 1)
    kernel = np.ones((3, 3), np.uint8)
    while True:
        grown = cv2.min(cv2.dilate(marker, kernel), grid)
        if cv2.norm(grown, marker, cv2.NORM_INF) == 0:
            return marker
        marker = grown
