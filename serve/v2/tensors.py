"""Input tensors checked against the model: shape, datatype, element count and values.

Two inputs are accepted: the model's own FP32 pixels, and ``image_bytes``, a BYTES tensor of
encoded images (PNG, JPEG, ...), one per batch item.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math

import numpy as np

from serve.errors import InvalidInput, PayloadTooLarge
from serve.v2 import binary
from serve.v2.request import InputTensor

#: Name of the BYTES input carrying encoded images.
IMAGE_INPUT = "image_bytes"
#: How far outside [0, 1] a pixel may stray (rounding by clients) before it is refused.
PIXEL_TOLERANCE = 1e-4


def _squeezed(dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(dim for dim in dims if dim != 1)


def check_pixel_shape(shape: tuple[int, ...], model_shape: tuple[int, ...]) -> None:
    """Accept ``[batch, ...]`` when the per-item dimensions are the model's, or hold the
    same pixels in the same row-major order: equal once unit dimensions are dropped, or
    flat on either side (``[n, 784]``, ``[n, 28, 28]``, ``[n, 28, 28, 1]``, ``[n, 1, 28, 28]``)."""
    expected = list(model_shape)
    if len(shape) < 2 or shape[0] < 1:
        raise InvalidInput(
            f"shape {list(shape)} does not fit the model's input shape {expected}: "
            "expected a batch dimension of at least 1 followed by the pixel dimensions"
        )
    item, model_item = shape[1:], model_shape[1:]
    if item == model_item or -1 in model_item:
        return
    same_pixels = math.prod(item) == math.prod(model_item) and (
        _squeezed(item) == _squeezed(model_item) or len(item) == 1 or len(model_item) == 1
    )
    if not same_pixels:
        raise InvalidInput(f"shape {list(shape)} does not fit the model's input shape {expected}")


def pixels(tensor: InputTensor, model_shape: tuple[int, ...], max_elements: int) -> np.ndarray:
    """The FP32 input as a float32 array in the model's own layout, checked: shape, element
    count (413 beyond ``max_elements``), finite values within [0, 1]."""
    if tensor.datatype != "FP32":
        raise InvalidInput(
            f"input {tensor.name!r} has datatype {tensor.datatype!r}; the model takes FP32"
        )
    check_pixel_shape(tensor.shape, model_shape)
    count = math.prod(tensor.shape)
    if count > max_elements:
        raise PayloadTooLarge(
            f"input {tensor.name!r} has {count} elements; at most {max_elements} are accepted"
        )
    if tensor.raw is not None:
        if len(tensor.raw) != count * 4:
            raise InvalidInput(
                f"input {tensor.name!r} of shape {list(tensor.shape)} needs {count * 4} bytes "
                f"of FP32 data, not {len(tensor.raw)}"
            )
        array = np.frombuffer(tensor.raw, dtype="<f4")
        if not array.flags.aligned:
            array = array.copy()
    else:
        array = _from_json(tensor, count)
    _check_values(tensor.name, array)
    layout = tensor.shape[:1] + model_shape[1:] if -1 not in model_shape[1:] else tensor.shape
    return array.reshape(layout)


def _from_json(tensor: InputTensor, count: int) -> np.ndarray:
    """JSON ``data`` (flat or nested row-major) as a flat float32 array. As the protocol
    allows, elements are coerced to FP32 (numeric strings and booleans included)."""
    data = tensor.data
    if not isinstance(data, list):
        raise InvalidInput(f"'data' of input {tensor.name!r} must be a list of numbers")
    try:
        # Flattening the nesting level by level is several times faster than letting
        # numpy discover it; rows of unequal length are caught by the count at each level.
        while data and isinstance(data[0], list):
            rows, width = len(data), len(data[0])
            data = list(itertools.chain.from_iterable(data))
            if len(data) != rows * width:
                raise ValueError("nested rows have unequal lengths")
        with np.errstate(over="ignore"):
            # Numbers beyond float32's range become infinities, refused by _check_values.
            array = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError) as ex:
        raise InvalidInput(
            f"'data' of input {tensor.name!r} must hold numbers only, flat or nested "
            f"row-major to match the shape ({ex})"
        ) from None
    if array.ndim != 1 or array.size != count:
        raise InvalidInput(
            f"input {tensor.name!r} has {array.size} elements in 'data' but its shape "
            f"{list(tensor.shape)} needs {count}"
        )
    return array


def _check_values(name: str, array: np.ndarray) -> None:
    """Refuse NaN, infinities (and JSON nulls, which become NaN) and pixels outside [0, 1]."""
    if not array.size:
        return
    lowest, highest = float(array.min()), float(array.max())
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        raise InvalidInput(f"input {name!r} holds NaN, infinite or null values")
    if lowest < -PIXEL_TOLERANCE or highest > 1.0 + PIXEL_TOLERANCE:
        raise InvalidInput(
            f"input {name!r} holds values from {lowest:g} to {highest:g}; "
            "pixels must be in [0, 1] (white digit on black)"
        )


def encoded_images(tensor: InputTensor, max_images: int) -> list[bytes]:
    """The ``image_bytes`` input as a list of encoded images: shape ``[n]`` or ``[n, 1]``;
    binary elements length-prefixed, JSON elements base64 strings."""
    if tensor.datatype != "BYTES":
        raise InvalidInput(
            f"input {IMAGE_INPUT!r} has datatype {tensor.datatype!r}; it takes BYTES"
        )
    shape = list(tensor.shape)
    if len(shape) not in (1, 2) or shape[0] < 1 or shape[1:] not in ([], [1]):
        raise InvalidInput(
            f"input {IMAGE_INPUT!r} has shape {shape}; expected [batch] or [batch, 1] "
            "with one encoded image per batch item"
        )
    count = shape[0]
    if count > max_images:
        raise PayloadTooLarge(f"{count} images in one request; at most {max_images} are accepted")
    if tensor.raw is not None:
        return binary.split_elements(tensor.raw, count)
    return _decode_base64(tensor.data, count)


def _decode_base64(data: object, count: int) -> list[bytes]:
    if not isinstance(data, list):
        raise InvalidInput(f"'data' of input {IMAGE_INPUT!r} must be a list of base64 strings")
    flat = [item[0] if isinstance(item, list) and len(item) == 1 else item for item in data]
    if len(flat) != count:
        raise InvalidInput(
            f"input {IMAGE_INPUT!r} has {len(flat)} elements in 'data' but its shape says {count}"
        )
    images = []
    for index, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidInput(f"{IMAGE_INPUT}[{index}] must be a base64 string")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{IMAGE_INPUT}[{index}] is not valid base64") from None
    return images
