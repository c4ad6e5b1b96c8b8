"""Each OpenCV-backed cleaning step against a plain numpy reference, on random inputs:
minimum and maximum filters, opening by reconstruction, the background grid's bilinear
resize, connected components (keep_digit) and the EXIF turn of a reduced array."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageOps

from serve.images import ink, morphology, normalise

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
grids = hnp.arrays(np.float32, shapes, elements=st.floats(0, 1, width=32))


def slide(values: np.ndarray, size: int, axis: int, combine: np.ufunc) -> np.ndarray:
    """The window of ``size`` along ``axis`` (centred, the extra one after), by shifts."""
    before, after = (size - 1) // 2, size // 2
    result = values.copy()
    moved, source = np.moveaxis(result, axis, 0), np.moveaxis(values, axis, 0)
    for shift in range(1, min(after, source.shape[0] - 1) + 1):
        combine(moved[:-shift], source[shift:], out=moved[:-shift])
    for shift in range(1, min(before, source.shape[0] - 1) + 1):
        combine(moved[shift:], source[:-shift], out=moved[shift:])
    return result


def reference_filter(values: np.ndarray, size: int, combine: np.ufunc) -> np.ndarray:
    """Minimum or maximum filter, window stopping at the edges."""
    return slide(slide(values, size, 0, combine), size, 1, combine)


def reference_opening(grid: np.ndarray, radius: int) -> np.ndarray:
    """Opening by reconstruction, with the reference filters."""
    marker = reference_filter(grid, 2 * radius + 1, np.minimum)
    while True:
        grown = np.minimum(reference_filter(marker, 3, np.maximum), grid)
        if np.array_equal(grown, marker):
            return marker
        marker = grown


def linear_weights(out_size: int, in_size: int) -> np.ndarray:
    """Linear interpolation weights, pixel centres aligned, edges clamped."""
    centres = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    weights = np.zeros((out_size, in_size))
    np.add.at(weights, (np.arange(out_size), low), 1 - (centres - low))
    np.add.at(weights, (np.arange(out_size), high), centres - low)
    return weights


def reference_components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels by repeated neighbour minimum (0 = background)."""
    height, width = mask.shape
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    big = mask.size + 1
    while True:
        padded = np.pad(np.where(mask, labels, big), 1, constant_values=big)
        neighbours = np.min(
            [padded[r : r + height, c : c + width] for r in range(3) for c in range(3)], axis=0
        )
        grown = np.where(mask, np.minimum(labels, neighbours), 0)
        if np.array_equal(grown, labels):
            return labels
        labels = grown


@settings(max_examples=200, deadline=None)
@given(grids, st.integers(1, 9))
def test_min_and_max_filters_match_the_sliding_reference(grid: np.ndarray, size: int) -> None:
    np.testing.assert_array_equal(
        morphology.max_filter(grid, size), reference_filter(grid, size, np.maximum)
    )
    np.testing.assert_array_equal(
        morphology.min_filter(grid, size), reference_filter(grid, size, np.minimum)
    )


@settings(max_examples=200, deadline=None)
@given(grids, st.integers(1, 3))
def test_opening_matches_the_reference(grid: np.ndarray, radius: int) -> None:
    np.testing.assert_array_equal(morphology.opening(grid, radius), reference_opening(grid, radius))


@settings(max_examples=200, deadline=None)
@given(grids, st.integers(1, 90), st.integers(1, 90))
def test_grid_resize_matches_the_bilinear_reference(
    grid: np.ndarray, height: int, width: int
) -> None:
    expected = linear_weights(height, grid.shape[0]) @ grid @ linear_weights(width, grid.shape[1]).T
    np.testing.assert_allclose(normalise._grid_resize(grid, height, width), expected, atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_keep_digit_keeps_whole_components(mask: np.ndarray) -> None:
    kept = ink.keep_digit(mask)
    assert not (kept & ~mask).any(), "only ink is kept"
    labels = reference_components(mask)
    for label in np.unique(labels[mask]):
        component = labels == label
        assert kept[component].all() or not kept[component].any(), "a component is whole"
    if mask.any():
        areas = np.bincount(labels[mask])
        largest = np.flatnonzero(areas == areas.max())
        assert any(kept[labels == label].all() for label in largest), "the largest is kept"


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))),
    st.integers(1, 8),
)
def test_upright_turns_as_exif_transpose_does(pixels: np.ndarray, orientation: int) -> None:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(normalise.upright(pixels, orientation), expected)
