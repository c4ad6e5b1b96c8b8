"""Encoded image bytes to the 28x28 a model reads: decode, normalise, and time both for the
metrics. The one path that ``/predict`` and the v2 ``image_bytes`` input share."""

from __future__ import annotations

import functools
import time

import numpy as np

from serve.errors import ServiceError
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
