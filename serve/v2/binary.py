"""The binary tensor data extension's framing: a JSON header, then raw tensor bytes.

Also Triton's BYTES serialisation: each element is a 4-byte little-endian length, then
that many bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from serve.errors import InvalidInput

#: Request and response header giving the length of the JSON part of the body.
HEADER_LENGTH = "Inference-Header-Content-Length"

_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """Split a request body into its JSON header and the binary data after it.

    ``header_length`` is the Inference-Header-Content-Length header (None when absent, in
    which case the whole body is JSON). The binary part is a view: nothing is copied."""
    view = memoryview(body)
    if header_length is None:
        return body, view[len(body) :]
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput(
            f"{HEADER_LENGTH} must be an integer, not {header_length[:40]!r}"
        ) from None
    if not 0 < length <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {length} but the body holds {len(body)} bytes")
    return body[:length], view[length:]


def split_elements(data: memoryview, count: int) -> list[bytes]:
    """Decode ``count`` BYTES elements (length-prefixed) that must fill ``data`` exactly."""
    elements: list[bytes] = []
    offset = 0
    for index in range(count):
        if offset + _LENGTH.size > len(data):
            raise InvalidInput(
                f"BYTES data ends after {index} of {count} elements: each element needs a "
                "4-byte little-endian length prefix"
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise InvalidInput(
                f"BYTES element {index} declares {length} bytes but only "
                f"{len(data) - offset} remain"
            )
        elements.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise InvalidInput(
            f"BYTES data holds {len(data) - offset} bytes beyond its {count} elements"
        )
    return elements


def join_elements(elements: Iterable[bytes]) -> bytes:
    """Serialise BYTES elements, each behind its 4-byte little-endian length."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)
