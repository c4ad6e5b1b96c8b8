"""Test images built in memory: any Pillow image encoded, a drawn digit stroke, and
hand-made PNGs whose header declares whatever size a test needs."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw


def encoded(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    """``image`` saved as ``image_format`` (Pillow's save ``options`` passed on), in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def stroke_png(side: int = 28, stroke: bool = True) -> bytes:
    """A ``side`` x ``side`` PNG of a vertical white stroke (a "1") on black; all black when
    ``stroke`` is False."""
    image = Image.new("L", (side, side), 0)
    if stroke:
        ImageDraw.Draw(image).line((side // 2, 4, side // 2, side - 5), fill=255, width=3)
    return encoded(image)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_declaring(width: int, height: int, idat: bytes = zlib.compress(b"\x00" * 64)) -> bytes:
    """A greyscale PNG whose header declares ``width`` x ``height``, with ``idat`` as its
    data (by default a few bytes: with a large declared size, a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )
