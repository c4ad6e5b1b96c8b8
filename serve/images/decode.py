"""Decoding uploaded bytes into a Pillow image, in memory, within limits.

Only the formats of :data:`ALLOWED_FORMATS` are decoded. A format Pillow or a signature
check recognises but we do not read is a 415; bytes that are no image at all, empty or
truncated are a 400; an image whose header declares more than ``max_pixels`` pixels is a
413, found from the header before a single pixel is decoded. A JPEG is decoded straight to
a reduced size (DCT scaling) when a smaller one is asked for, and one with more scans than
:data:`MAX_JPEG_SCANS` is refused before decoding.
"""

from __future__ import annotations

import io
import math
import re
import warnings

import numpy as np
from PIL import Image

from serve.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

#: Pillow format names we decode (JPEG includes MPO, the multi-picture JPEG phones write;
#: DIB is BMP without its file header).
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP")

#: By default a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps its
#: longer side at least this long: the working size of serve.images.normalise.
REDUCED_SIDE = 320

#: A progressive JPEG has about ten scans; each one is a pass over the whole image, so a
#: file repeating a scan is refused above this many.
MAX_JPEG_SCANS = 100

#: DCT scale divisors libjpeg decodes to directly.
_DCT_SCALES = (8, 4, 2)

#: Leading bytes of documents people upload instead of images, and their names.
_DOCUMENT_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype html", "HTML"),
    (b"<html", "HTML"),
    (b"<!doctype svg", "SVG"),
)

#: How many leading bytes are searched for a document signature (after whitespace, BOM).
_SNIFF_BYTES = 512

#: A marker after stray bytes: 0xFF, then neither a stuffed zero nor a restart marker
#: (0xD0-0xD7); fill bytes (0xFF) may come before it.
_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")

#: The start-of-scan marker.
_SOS = b"\xff\xda"

#: Markers without a length field.
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _document_type(data: bytes) -> str | None:
    """Name of the text or document format ``data`` starts with, or None."""
    head = data[:_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for signature, name in _DOCUMENT_SIGNATURES:
        if head.startswith(signature.lower()):
            return name
    if b"<svg" in head:
        return "SVG"
    return None


def _other_format(data: bytes) -> str | None:
    """Name of an image format Pillow knows but we do not decode, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:
        return None


def _too_large(ex: Exception, max_pixels: int) -> PayloadTooLarge:
    """PayloadTooLarge for Pillow's decompression bomb guard, quoting our own limit."""
    found = _BOMB_PIXELS.search(str(ex))
    pixels = f"{int(found.group(1))} pixels" if found else "more pixels than Pillow decodes"
    return PayloadTooLarge(f"image is {pixels}; the limit is {max_pixels}")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open ``data`` lazily (header only) with the allowed formats; ServiceError otherwise."""
    if not data:
        raise InvalidImage("empty image: the upload holds no bytes")
    document = _document_type(data)
    if document is not None:
        raise UnsupportedMediaType(
            f"{document} is not supported; send one of {', '.join(ALLOWED_FORMATS)}"
        )
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as ex:
        raise _too_large(ex, max_pixels) from ex
    except Image.UnidentifiedImageError as ex:
        other = _other_format(data)
        if other is not None:
            raise UnsupportedMediaType(
                f"{other} images are not supported; send one of {', '.join(ALLOWED_FORMATS)}"
            ) from ex
        raise InvalidImage("not an image: the bytes match no known image format") from ex
    except Exception as ex:
        raise InvalidImage(f"not a readable image: {ex}") from ex


def _occurrences(data: bytes, start: int, pair: bytes) -> int:
    """How many times the two bytes ``pair`` occur in ``data[start:]``: the bytes compared
    as 16-bit words at both alignments (numpy, faster than ``bytes.count``)."""
    word = int.from_bytes(pair, "little")
    rest = memoryview(data)[start:]
    if len(rest) < 2:
        return 0
    return sum(
        int(np.count_nonzero(np.frombuffer(rest, "<u2", (len(rest) - shift) // 2, shift) == word))
        for shift in (0, 1)
    )


def jpeg_scans(data: bytes) -> int:
    """Number of scans (SOS segments) of a JPEG, at most over-counted: its header segments
    are walked by their lengths up to the first scan (so that bytes inside them, an EXIF
    thumbnail's own scan for one, are skipped), then the SOS markers after it are counted
    (in entropy-coded data 0xFF is always followed by a stuffed zero or a restart marker,
    so 0xFFDA there is a marker). Stops at EOI or at the end of what is readable."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:  # Stray bytes: libjpeg skips to the next marker, as here.
            found = _NEXT_MARKER.search(data, position)
            if found is None:
                break
            position = found.end() - 2
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # A fill byte before the marker.
            position += 1
            continue
        if marker == 0xD9:
            break
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker == 0xDA:
            return 1 + _occurrences(data, position + 2, _SOS)
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return 0


def _check_scans(image: Image.Image, data: bytes) -> None:
    """Refuse a JPEG with more than MAX_JPEG_SCANS scans (400)."""
    if image.format in ("JPEG", "MPO"):
        scans = jpeg_scans(data)
        if scans > MAX_JPEG_SCANS:
            raise InvalidImage(
                f"JPEG has {scans} scans; the limit is {MAX_JPEG_SCANS} "
                "(a progressive JPEG has about ten)"
            )


def _draft(image: Image.Image, least_side: int) -> None:
    """Ask a JPEG for the smallest DCT scale that keeps its longer side at least
    ``least_side``, in grey when it is stored as grey or YCbCr colour."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = image.size
    divisor = next((scale for scale in _DCT_SCALES if max(width, height) >= scale * least_side), 1)
    if divisor == 1:
        return
    mode = "L" if image.mode in ("L", "RGB") else image.mode
    image.info["full_size"] = image.size
    image.draft(mode, (math.ceil(width / divisor), math.ceil(height / divisor)))


def load_decoders() -> None:
    """Import Pillow's format plugins now, as the first decode would (tens of ms), so that a
    worker pays for it before it takes requests."""
    Image.init()


def declared_pixels(data: bytes) -> int:
    """Width x height that the header of ``data`` declares, without decoding the pixels.

    Raises InvalidImage or UnsupportedMediaType as :func:`decode` does for bytes that are no
    image of an allowed format, and PayloadTooLarge where Pillow's own bomb guard refuses
    the header outright."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _open(data, Image.MAX_IMAGE_PIXELS or 0) as image:
            width, height = image.size
    return width * height


def decode(data: bytes, max_pixels: int, least_side: int | None = REDUCED_SIDE) -> Image.Image:
    """Decode ``data`` (an encoded PNG, JPEG, GIF (first frame), BMP, TIFF or WebP) into a
    loaded Pillow image, in memory. A JPEG is decoded at the smallest DCT scale whose longer
    side is at least ``least_side`` (``None``: full size), in grey unless it is CMYK; its
    full size is then in ``image.info["full_size"]``. Other formats come at full size.

    Raises InvalidImage (empty, unreadable or truncated bytes, too many JPEG scans),
    UnsupportedMediaType (a document or image format outside the allowlist) or
    PayloadTooLarge (more than ``max_pixels`` pixels, judged from the header before
    decoding). Never raises anything else.
    """
    with warnings.catch_warnings():
        # Pillow warns about corrupt metadata of hostile files (the outcome says enough),
        # and its own bomb guard warns before it raises: here that is an error, not noise.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data, max_pixels)
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        _check_scans(image, data)
        try:
            if least_side is not None:
                _draft(image, least_side)
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as ex:
            raise _too_large(ex, max_pixels) from ex
        except Exception as ex:
            raise InvalidImage(f"truncated or corrupt {image.format} image: {ex}") from ex
    if width * height == 0:
        raise InvalidImage("image has no pixels")
    return image
