"""Decoding uploaded bytes into a Pillow image, in memory, within limits.

Only the formats of :data:`ALLOWED_FORMATS` are decoded. A format Pillow or a signature
check recognises but we do not read is a 415; bytes that are no image at all, empty or
truncated are a 400; an image whose header declares more than ``max_pixels`` pixels is a
413, found from the header before a single pixel is decoded.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

from serve.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

#: Pillow format names we decode (JPEG includes MPO, the multi-picture JPEG phones write;
#: DIB is BMP without its file header).
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP")

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


def _open(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header only) with the allowed formats; ServiceError otherwise."""
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as ex:
        raise PayloadTooLarge(f"image too large to decode safely: {ex}") from ex
    except Image.UnidentifiedImageError as ex:
        other = _other_format(data)
        if other is not None:
            raise UnsupportedMediaType(
                f"{other} images are not supported; send one of {', '.join(ALLOWED_FORMATS)}"
            ) from ex
        raise InvalidImage("not an image: the bytes match no known image format") from ex
    except Exception as ex:
        raise InvalidImage(f"not a readable image: {ex}") from ex


def load_decoders() -> None:
    """Import Pillow's format plugins now, as the first decode would (tens of ms), so that a
    worker pays for it before it takes requests."""
    Image.init()


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` (an encoded PNG, JPEG, GIF (first frame), BMP, TIFF or WebP) into a
    loaded Pillow image, in memory.

    Raises InvalidImage (empty, unreadable or truncated bytes), UnsupportedMediaType (a
    document or image format outside the allowlist) or PayloadTooLarge (more than
    ``max_pixels`` pixels, judged from the header before decoding). Never raises anything else.
    """
    if not data:
        raise InvalidImage("empty image: the upload holds no bytes")
    document = _document_type(data)
    if document is not None:
        raise UnsupportedMediaType(
            f"{document} is not supported; send one of {', '.join(ALLOWED_FORMATS)}"
        )
    with warnings.catch_warnings():
        # Pillow warns about corrupt metadata of hostile files (the outcome says enough),
        # and its own bomb guard warns before it raises: here that is an error, not noise.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data)
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as ex:
            raise PayloadTooLarge(f"image too large to decode safely: {ex}") from ex
        except Exception as ex:
            raise InvalidImage(f"truncated or corrupt {image.format} image: {ex}") from ex
    if width * height == 0:
        raise InvalidImage("image has no pixels")
    return image
