"""Encoded image bytes to the 28x28 a model reads: decode, normalise, and time both for the
metrics; and the pixel budget of a request's images, judged from their headers. The one
path that ``/predict`` and the v2 ``image_bytes`` input share."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import numpy as np

from serve.errors import PayloadTooLarge, ServiceError
from serve.images import decode, normalise
from serve.observability import metrics


def read_digit(data: bytes, max_pixels: int, name: str | None = None) -> np.ndarray:
    """Decode ``data`` and MNIST-normalise it into a ``[28, 28]`` float32 array. A
    ServiceError's description is prefixed with ``name`` (a filename, ``image_bytes[3]``)
    when one is given, so that a batch's error says which image it is about."""
    try:
        started = time.perf_counter()
        image = decode.decode(data, max_pixels)
        decoded = time.perf_counter()
        digit = normalise.to_mnist(image, functools.partial(decode.decode, data, max_pixels))
    except ServiceError as ex:
        if name is None:
            raise
        raise type(ex)(f"{name}: {ex.description}") from ex
    metrics.observe_decode(decoded - started)
    metrics.observe_preprocess(time.perf_counter() - decoded)
    return digit


def require_pixel_budget(images: Sequence[bytes], budget: int) -> None:
    """PayloadTooLarge unless the pixels that ``images`` (encoded) declare in their headers
    add up to at most ``budget``; judged before any of them is decoded, so that one
    request's decode work stays bounded however many images it carries."""
    total = sum(map(_declared_pixels, images))
    if total > budget:
        raise PayloadTooLarge(
            f"the {len(images)} image(s) declare {total} pixels in all; the limit is "
            f"{budget} pixels per request (setting max_request_pixels, MNIST_MAX_REQUEST_PIXELS)"
        )


def _declared_pixels(data: bytes) -> int:
    """Width x height as the image's header declares it, nothing decoded; 0 for bytes
    that are no readable image (decoding them answers why, naming the file)."""
    try:
        return decode.declared_pixels(data)
    except ServiceError:
        return 0
