"""Reading the uploaded images out of a request, in memory and within limits.

A request carries its images either as multipart/form-data parts named ``file`` or
``image`` (one or several), or as a raw body typed ``image/*`` or
``application/octet-stream``. Nothing is ever written to disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import socket
from collections.abc import Mapping
from typing import Any, Protocol, cast

import falcon
from falcon.media.multipart import MultipartFormHandler, MultipartParseOptions
from gunicorn.http import errors as gunicorn_errors

from serve.errors import (
    BodyTimeout,
    InvalidBody,
    InvalidImage,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from serve.settings import Settings

#: Multipart field names that carry an image.
FILE_FIELDS = frozenset({"file", "image"})
#: Multipart parts that are not images (form fields) tolerated besides the files.
EXTRA_PARTS = 16
#: How long a body may pause: when no byte of it arrives for this many seconds, 408.
BODY_TIMEOUT_SECONDS = 5.0
#: Bytes asked of the input stream per read.
_READ_SIZE = 64 * 1024
#: gunicorn's errors for malformed chunked framing, and for a chunked body cut short.
_CHUNK_ERRORS = (
    gunicorn_errors.InvalidChunkSize,
    gunicorn_errors.ChunkMissingTerminator,
    gunicorn_errors.InvalidChunkExtension,
)
_TRUNCATION_ERRORS = (gunicorn_errors.NoMoreData,)
RAW_TYPES = ("image/", "application/octet-stream")
ACCEPTED = (
    "send multipart/form-data with one or more parts named 'file' or 'image', "
    "or the image itself as a raw image/* or application/octet-stream body"
)


@dataclasses.dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes and the name the client gave it (None for a raw body)."""

    data: bytes
    filename: str | None = None


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """How much one request may carry."""

    max_body_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """The limits the settings give."""
        return cls(max_body_bytes=settings.max_body_bytes, max_files=settings.max_files)


class UploadResource(Protocol):
    """A resource that the hooks below guard: it exposes its limits."""

    limits: UploadLimits


def _limits_of(resource: object) -> UploadLimits:
    return cast(UploadResource, resource).limits


def reject_oversized_body(
    req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
) -> None:
    """``falcon.before`` hook: 413 when the declared Content-Length is over the limit,
    before a byte of the body is read."""
    length = req.content_length
    limit = _limits_of(resource).max_body_bytes
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit} bytes")


def require_upload_content_type(
    req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
) -> None:
    """``falcon.before`` hook: 415 unless the body is multipart/form-data or a raw image."""
    media_type = _media_type(req)
    if media_type != falcon.MEDIA_MULTIPART and not media_type.startswith(RAW_TYPES):
        received = f"Content-Type {req.content_type!r}" if req.content_type else "no Content-Type"
        raise UnsupportedMediaType(f"received {received}; {ACCEPTED}")


def read_uploads(req: falcon.Request, limits: UploadLimits) -> list[Upload]:
    """The images a request carries, at least one and at most ``limits.max_files``.

    Raises InvalidInput (no file, malformed multipart), InvalidImage (an empty file) or
    PayloadTooLarge (body or file count over the limit)."""
    body = read_body(req, limits.max_body_bytes)
    if _media_type(req) == falcon.MEDIA_MULTIPART:
        uploads = _parse_multipart(body, req.content_type or "", limits)
    else:
        uploads = [Upload(body)] if body else []
    if not uploads:
        raise InvalidInput(f"the request carries no file; {ACCEPTED}")
    for upload in uploads:
        if not upload.data:
            raise InvalidImage(f"{upload.filename or 'the body'}: the file is empty")
    return uploads


def read_body(req: falcon.Request, max_bytes: int, timeout: float = BODY_TIMEOUT_SECONDS) -> bytes:
    """The whole body in memory, never more than ``max_bytes`` read (chunked bodies,
    which declare no length, included).

    Raises PayloadTooLarge beyond ``max_bytes``; InvalidBody for malformed chunked framing
    or a body that ends before its Content-Length; BodyTimeout when no byte of it arrives
    for ``timeout`` seconds (under gunicorn, whose client socket bounds each wait)."""
    length = req.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the body is over the limit of {max_bytes} bytes")
    if length is None and not req.env.get("wsgi.input_terminated"):
        # Without a length, only a server that ends the input stream may be read to its end.
        return b""
    client = _bound_waits(req.env, timeout)
    stream = req.stream if length is None else req.bounded_stream
    try:
        body = _read_up_to(stream, max_bytes + 1)
    except (TimeoutError, BlockingIOError) as ex:
        if client is not None:
            # Nothing more is read from this client: gunicorn, which would otherwise wait
            # for the rest of the body before closing, sees the end of the input at once.
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RD)
        raise BodyTimeout(
            f"the body did not arrive within {timeout:g} s: no byte of it came for that long"
        ) from ex
    except _CHUNK_ERRORS as ex:
        raise InvalidBody(f"malformed chunked body: {type(ex).__name__} {ex}") from ex
    except _TRUNCATION_ERRORS as ex:
        raise InvalidBody("the body ended before its last chunk (0 CRLF CRLF)") from ex
    except OSError as ex:
        raise InvalidBody(f"the connection broke while the body was read: {ex}") from ex
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body is over the limit of {max_bytes} bytes")
    if length is not None and len(body) < length:
        raise InvalidBody(
            f"the body ended after {len(body)} of the {length} bytes its Content-Length declares"
        )
    return body


def _bound_waits(environ: Mapping[str, Any], timeout: float) -> socket.socket | None:
    """Make every wait on gunicorn's client socket (``environ["gunicorn.socket"]``) end
    after ``timeout`` seconds: the body's reads here, and the answer's writes after (a
    client that never reads its answer). Returns the socket; None under other servers."""
    client = environ.get("gunicorn.socket")
    if not isinstance(client, socket.socket):
        return None
    client.settimeout(timeout)
    return client


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def _read_up_to(stream: _Readable, limit: int) -> bytes:
    """Read ``stream`` to its end or until ``limit`` bytes, whichever comes first."""
    chunks: list[bytes] = []
    received = 0
    while received < limit:
        chunk = stream.read(min(_READ_SIZE, limit - received))
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def _media_type(req: falcon.Request) -> str:
    return (req.content_type or "").split(";", 1)[0].strip().lower()


@functools.lru_cache(maxsize=8)
def _multipart_handler(max_body_bytes: int) -> MultipartFormHandler:
    options = MultipartParseOptions()
    options.max_body_part_count = 0  # Parts are counted by the caller, to answer 413.
    options.max_body_part_buffer_size = max_body_bytes
    return MultipartFormHandler(options)


def _parse_multipart(body: bytes, content_type: str, limits: UploadLimits) -> list[Upload]:
    handler = _multipart_handler(limits.max_body_bytes)
    uploads: list[Upload] = []
    parts = 0
    try:
        form = handler.deserialize(io.BytesIO(body), content_type, len(body))
        for part in form:
            parts += 1
            if parts > limits.max_files + EXTRA_PARTS:
                raise PayloadTooLarge(f"too many multipart parts (more than {parts - 1})")
            if part.name not in FILE_FIELDS:
                continue
            if len(uploads) == limits.max_files:
                raise PayloadTooLarge(f"too many files: at most {limits.max_files} per request")
            uploads.append(Upload(part.get_data(), part.filename))
    except (falcon.MediaMalformedError, falcon.HTTPInvalidHeader) as ex:
        raise InvalidInput(f"malformed multipart/form-data: {ex.description}") from ex
    return uploads
