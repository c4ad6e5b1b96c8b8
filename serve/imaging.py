"""Decoding uploaded bytes into a Pillow image, in memory, within limits (first version)."""

from __future__ import annotations

import io

from PIL import Image

from serve.errors import InvalidImage


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` into a Pillow image; raises a ServiceError for anything unusable."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as ex:
        raise InvalidImage(f"not a readable image: {ex}") from ex
    return image
