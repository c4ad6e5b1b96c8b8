"""One JSON line per request on the ``serve.access`` logger, and the ``X-Request-ID`` header.

Resources add what only they know through ``req.context``: ``model`` (the model's name),
``batch_size`` (images or tensor rows in the request); both are null in the line otherwise.
Under the keep-alive worker the lines are held and written out in batches
(serve/bookkeeping.py), each with the time its request was answered.
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
import select
import sys
import time
from collections.abc import Iterator
from typing import Any

import falcon
import orjson

from serve import bookkeeping

ACCESS_LOGGER = "serve.access"
REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is kept when it is 1 to 128 visible ASCII characters, else replaced.
_USABLE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


#: A write of at most this many bytes to a pipe is never interleaved with another
#: process's writes to it (POSIX), so no line is broken up.
ATOMIC_WRITE_BYTES = select.PIPE_BUF


def whole_line_chunks(lines: list[str], terminator: str, limit: int) -> Iterator[str]:
    """``lines``, each ended by ``terminator``, joined into chunks of whole lines of at most
    ``limit`` bytes (in UTF-8) each; a longer line is a chunk on its own."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        text = line + terminator
        length = len(text) if text.isascii() else len(text.encode())
        if chunk and size + length > limit:
            yield "".join(chunk)
            chunk, size = [], 0
        chunk.append(text)
        size += length
    if chunk:
        yield "".join(chunk)


class StderrLines(logging.StreamHandler):
    """The access logger's own handler: each message as a bare line on standard error."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))

    def write_lines(self, lines: list[str]) -> None:
        """Write ``lines`` as logging each message would, without making LogRecords, in
        writes of whole lines of at most ``ATOMIC_WRITE_BYTES``: on a pipe that all the
        workers share (a container's standard error), another process's output never lands
        inside a line."""
        self.acquire()
        try:
            for chunk in whole_line_chunks(lines, self.terminator, ATOMIC_WRITE_BYTES):
                self.stream.write(chunk)
                self.stream.flush()
        finally:
            self.release()


def configure_access_logger() -> logging.Logger:
    """The access logger, at INFO unless a level was set, writing bare JSON lines to stderr
    (:class:`StderrLines`) unless something (a gunicorn ``logconfig_dict``, a test) already gave
    it handlers. It then does not propagate, so a handler on the root logger does not print
    each line twice."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(StderrLines())
        logger.propagate = False
    return logger


def write_lines(logger: logging.Logger, lines: list[str]) -> None:
    """Log each of ``lines`` at INFO on ``logger``. While the logger has nothing but its
    :class:`StderrLines` handler and no filters, the lines are written to that handler's
    stream directly, several to a write: the same bytes, without the logging machinery
    (LogRecord, caller lookup, formatting), 9 us instead of 31 us of CPU for one line in a
    worker (Performance in the README). Any other set-up goes through logging as usual,
    and each record's own time is then when it was written, not when its request was
    answered (the line's ``time`` field)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logger.handlers
    if len(handlers) == 1 and not logger.filters:
        handler = handlers[0]
        if type(handler) is StderrLines and not handler.filters and handler.level <= logging.INFO:
            handler.write_lines(lines)
            return
    for line in lines:
        logger.info(line)


#: One answered request: (logger, time answered (epoch seconds), request id, method, route,
#: path, status, duration in ms, model, batch size).
Answered = tuple[logging.Logger, float, str, str, Any, str, int, float, Any, Any]


def _format(answered: Answered) -> str:
    """The JSON line of one answered request."""
    _, answered_at, identifier, method, route, path, status, duration_ms, model, batch = answered
    return orjson.dumps(
        {
            "time": datetime.datetime.fromtimestamp(answered_at, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "request_id": identifier,
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 3),
            "model": model,
            "batch_size": batch,
        },
        default=str,  # Whatever a resource left in the context, the line is still written.
    ).decode()


def _write_answered(items: list[Answered]) -> None:
    """Write the lines of answered requests, logger by logger."""
    lines: dict[logging.Logger, list[str]] = {}
    for answered in items:
        lines.setdefault(answered[0], []).append(_format(answered))
    for logger, logged in lines.items():
        write_lines(logger, logged)


_ANSWERED: bookkeeping.Deferred[Answered] = bookkeeping.Deferred(_write_answered)


def request_id(req: falcon.Request) -> str:
    """The client's ``X-Request-ID`` when it sent a usable one, else 32 new random hex
    digits (128 bits, the size of a trace id; a third of what ``uuid4().hex`` costs)."""
    sent = req.get_header(REQUEST_ID_HEADER)
    if sent is not None and _USABLE_REQUEST_ID.fullmatch(sent):
        return sent
    return secrets.token_hex(16)


class RequestLog:
    """Falcon middleware: gives every request an id (``req.context.request_id``), answers it
    in ``X-Request-ID`` and logs one JSON line per request when the response is ready."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or configure_access_logger()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Stamp the start time and pick the request id."""
        req.context.log_started = time.perf_counter()
        req.context.request_id = request_id(req)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Send the request id back and log the line."""
        context = req.context
        identifier = context.get("request_id") or request_id(req)
        resp.set_header(REQUEST_ID_HEADER, identifier)
        if not self._logger.isEnabledFor(logging.INFO):
            return
        started = context.get("log_started")
        duration_ms = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
        _ANSWERED.add(
            (
                self._logger,
                time.time(),
                identifier,
                req.method,
                req.uri_template,
                req.path,
                resp.status_code,
                duration_ms,
                context.get("model"),
                context.get("batch_size"),
            )
        )
