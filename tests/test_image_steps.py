"""Each OpenCV-backed cleaning step against a plain numpy reference, on random inputs:
minimum and maximum filters, opening by reconstruction, the background grid's bilinear
resize, connected components (keep_digit), the EXIF turn of a reduced array, Otsu's
threshold, the histogram median, the clip, the ink's bounds and the ruled-line fill."""

from __future__ import annotations

import numpy as np
import pytest
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


def reference_otsu(values: np.ndarray, bins: int = normalise.OTSU_BINS) -> float:
    """Otsu's threshold over ``bins`` equal bins of [0, 1], value 1 in the last bin."""
    indices = np.minimum((values * bins).astype(np.intp).ravel(), bins - 1)
    counts = np.bincount(indices, minlength=bins)
    centres = (np.arange(bins) + 0.5) / bins
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float((int(np.argmax(between)) + 1) / bins)


def between_class_variance(values: np.ndarray, threshold: float) -> float:
    """Otsu's criterion of splitting ``values`` (binned as otsu bins them) at ``threshold``."""
    binned = np.minimum(np.floor(values * normalise.OTSU_BINS), normalise.OTSU_BINS - 1)
    low = binned < threshold * normalise.OTSU_BINS
    if low.all() or not low.any():
        return 0.0
    return float(low.mean() * (1 - low.mean()) * (binned[low].mean() - binned[~low].mean()) ** 2)


unit_grids = hnp.arrays(
    np.float32,
    shapes,
    elements=st.one_of(st.floats(0, 1, width=32), st.sampled_from([0.0, 1.0, 0.5, 1 / 64, 3 / 64])),
)


@settings(max_examples=300, deadline=None)
@given(unit_grids)
def test_otsu_picks_a_threshold_as_good_as_the_reference(values: np.ndarray) -> None:
    """The same threshold, or (where two splits tie) one that separates as well."""
    threshold, expected = normalise.otsu(values), reference_otsu(values)
    if threshold != expected:
        assert between_class_variance(values, threshold) == pytest.approx(
            between_class_variance(values, expected), rel=1e-6
        )


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.uint8, shapes),
    st.floats(0, 1),
)
def test_grey_quantile_of_8_bit_levels_is_exact(levels: np.ndarray, fraction: float) -> None:
    grey = levels.astype(np.float32) / 255.0
    index = int(fraction * (grey.size - 1))
    expected = float(np.sort(grey.ravel())[index])
    assert normalise.grey_quantile(grey, fraction) == expected


@settings(max_examples=200, deadline=None)
@given(unit_grids, st.floats(0, 1))
def test_grey_quantile_of_any_values_is_within_half_a_level(
    grey: np.ndarray, fraction: float
) -> None:
    index = int(fraction * (grey.size - 1))
    expected = float(np.sort(grey.ravel())[index])
    assert abs(normalise.grey_quantile(grey, fraction) - expected) <= 0.5 / 255 + 1e-7


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float32, shapes, elements=st.floats(-2, 2, width=32)),
    st.one_of(st.none(), st.floats(0.5, 1.5, width=32)),
)
def test_clip_matches_numpy(values: np.ndarray, high: float | None) -> None:
    expected = np.clip(values, 0.0, np.inf if high is None else high)
    np.testing.assert_array_equal(normalise._clip(values.copy(), 0.0, high), expected)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.bool_, shapes))
def test_bounds_are_those_of_the_true_pixels(mask: np.ndarray) -> None:
    if not mask.any():
        top, _, bottom, _ = normalise._bounds(mask)
        assert top == bottom
        return
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    expected = (rows[0], columns[0], rows[-1] + 1, columns[-1] + 1)
    assert normalise._bounds(mask) == expected
    assert normalise._bounds(np.asfortranarray(mask)) == expected


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.bool_, shapes))
def test_remove_ruled_lines_matches_the_mean_fill_reference(mask: np.ndarray) -> None:
    """Row and column fills from cv2.reduce, as the plain means would give them."""
    height, width = mask.shape
    rows = ink._line_bands(mask.mean(axis=1), max(2, round(ink.LINE_MAX_THICKNESS * height)))
    columns = ink._line_bands(mask.mean(axis=0), max(2, round(ink.LINE_MAX_THICKNESS * width)))
    cleaned = ink.remove_ruled_lines(mask)
    if not rows and not columns:
        np.testing.assert_array_equal(cleaned, mask)
    assert not (cleaned & ~mask).any()
