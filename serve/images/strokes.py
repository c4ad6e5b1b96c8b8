"""Stroke width: measure it, and bring hair-thin or very thick strokes towards MNIST's pen
width."""

from __future__ import annotations

import numpy as np

from serve.images.morphology import max_filter, min_filter

#: Stroke widths (twice area over perimeter, in pixels of the 20x20 box) of MNIST digits:
#: about its 2nd and 99th percentiles bound the range left alone; thinner strokes are
#: thickened to the median, thicker ones thinned to the 90th percentile.
STROKE_MIN = 1.2
STROKE_MAX = 3.4
STROKE_TARGET = 1.9
STROKE_THINNED = 2.6


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a boolean mask: twice its area over its perimeter."""
    edges = [mask[1:] != mask[:-1], mask[:, 1:] != mask[:, :-1], mask[0], mask[-1]]
    perimeter = sum(int(np.count_nonzero(part)) for part in [*edges, mask[:, 0], mask[:, -1]])
    return 2.0 * float(mask.sum()) / max(perimeter, 1)


def _tight(values: np.ndarray) -> np.ndarray:
    """Crop a 2-D array to the bounding box of its non-zero values."""
    rows, columns = np.flatnonzero(values.any(axis=1)), np.flatnonzero(values.any(axis=0))
    if rows.size == 0:
        return values
    return values[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def normalise_strokes(patch: np.ndarray, box_side: int) -> np.ndarray:
    """Thicken hair-thin strokes, or thin very thick ones, towards MNIST's pen width,
    judged at the scale the digit will have once fitted into MNIST's ``box_side`` box (20);
    returns the re-cropped patch."""
    scale = box_side / max(patch.shape)
    width = stroke_width(patch > 0.5) * scale
    if width < STROKE_MIN:
        size = round((STROKE_TARGET - width) / scale) + 1
        return _tight(max_filter(np.pad(patch, size), size)) if size > 1 else patch
    if width > STROKE_MAX:
        size = round((width - STROKE_THINNED) / scale) + 1
        thinned = min_filter(np.pad(patch, 1), size)[1:-1, 1:-1] if size > 1 else patch
        return _tight(thinned) if thinned.max() > 0.5 else patch
    return patch
