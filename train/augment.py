"""Training-time augmentation in the tf.data pipeline (never inside the exported model).

Small random rotation, zoom and shift (one affine warp per image), and stroke thickness
variation (soft dilation or erosion), all drawn with stateless random ops keyed on the seed
and the batch number, so a run is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow

MAX_ROTATION_DEGREES = 10.0
ZOOM_RANGE = (0.9, 1.1)
MAX_SHIFT_PIXELS = 2.0
#: Probabilities of thickening and of thinning the strokes of an image.
THICKEN_PROBABILITY = 0.25
THIN_PROBABILITY = 0.1
CENTRE = 13.5


def _uniform(batch: Any, seed: Any, low: float, high: float) -> Any:
    return tensorflow.random.stateless_uniform([batch], seed, low, high)


def affine_transforms(batch: Any, seed: Any) -> Any:
    """``[batch, 8]`` projective transforms mapping output pixels to input pixels: a rotation
    and zoom about the centre, then a shift."""
    seeds = tensorflow.random.experimental.stateless_split(seed, 4)
    angle = _uniform(batch, seeds[0], -1.0, 1.0) * (MAX_ROTATION_DEGREES * math.pi / 180.0)
    zoom = _uniform(batch, seeds[1], *ZOOM_RANGE)
    shift_x = _uniform(batch, seeds[2], -MAX_SHIFT_PIXELS, MAX_SHIFT_PIXELS)
    shift_y = _uniform(batch, seeds[3], -MAX_SHIFT_PIXELS, MAX_SHIFT_PIXELS)
    cosine, sine = tensorflow.cos(angle) / zoom, tensorflow.sin(angle) / zoom
    target_x, target_y = CENTRE + shift_x, CENTRE + shift_y
    offset_x = CENTRE - cosine * target_x - sine * target_y
    offset_y = CENTRE + sine * target_x - cosine * target_y
    zeros = tensorflow.zeros_like(angle)
    return tensorflow.stack([cosine, sine, offset_x, -sine, cosine, offset_y, zeros, zeros], axis=1)


def vary_strokes(images: Any, seed: Any) -> Any:
    """Thicken some images (blend towards a 3x3 dilation) and thin a few (half-way at most
    towards an erosion, which would erase thin strokes)."""
    batch = tensorflow.shape(images)[0]
    seeds = tensorflow.random.experimental.stateless_split(seed, 2)
    choice = tensorflow.random.stateless_uniform([batch, 1, 1, 1], seeds[0])
    strength = tensorflow.random.stateless_uniform([batch, 1, 1, 1], seeds[1], 0.3, 1.0)
    dilated = tensorflow.nn.max_pool2d(images, 3, 1, "SAME")
    eroded = -tensorflow.nn.max_pool2d(-images, 3, 1, "SAME")
    thickened = images + strength * (dilated - images)
    thinned = images + 0.5 * strength * (eroded - images)
    return tensorflow.where(
        choice < THICKEN_PROBABILITY,
        thickened,
        tensorflow.where(choice > 1.0 - THIN_PROBABILITY, thinned, images),
    )


def augment(images: Any, labels: Any, seed: Any) -> tuple[Any, Any]:
    """Augment a batch of ``[batch, 28, 28, 1]`` float images in [0, 1]; labels unchanged."""
    warp_seed, stroke_seed = tensorflow.unstack(
        tensorflow.random.experimental.stateless_split(seed, 2)
    )
    batch = tensorflow.shape(images)[0]
    warped = tensorflow.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=affine_transforms(batch, warp_seed),
        output_shape=tensorflow.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return tensorflow.clip_by_value(vary_strokes(warped, stroke_seed), 0.0, 1.0), labels
