"""One JSON line per request on the ``serve.access`` logger, and the ``X-Request-ID`` header.

The middleware hands logging a record carrying the request's fields; :class:`JsonFormatter`
turns it into the line. Resources add what only they know through ``req.context``:
``model`` (the model's name) and ``batch_size`` (images or tensor rows); both are null
otherwise. Every text field is capped, so a line stays well under ``PIPE_BUF`` (4,096
bytes) and is written in one call: on a pipe the workers share, lines never interleave.
"""

from __future__ import annotations

import datetime
import logging
import re
import secrets
import sys
import threading
import time
from typing import Any

import falcon
import orjson

ACCESS_LOGGER = "serve.access"
REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is kept when it is 1 to 128 visible ASCII characters, else replaced.
_USABLE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
#: The longest path, route or model name written; longer ones are cut and marked.
MAX_FIELD_CHARS = 512
_CUT_MARK = "..."


def capped(value: Any) -> Any:
    """``value`` itself, or a string of at most MAX_FIELD_CHARS characters for a long text."""
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[: MAX_FIELD_CHARS - len(_CUT_MARK)] + _CUT_MARK
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ``time`` (UTC, milliseconds), then the fields in
    the record's ``request`` attribute (from ``extra=``), each text capped; a record without
    them is written as ``{"time", "level", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {"time": stamp.isoformat(timespec="milliseconds")}
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            line.update((key, capped(value)) for key, value in fields.items())
        else:
            line["level"] = record.levelname
            line["message"] = capped(record.getMessage())
        # Whatever a resource left in the context, the line is still written.
        return orjson.dumps(line, default=lambda value: capped(str(value))).decode()


def configure_access_logger() -> logging.Logger:
    """The access logger, at INFO unless a level was set, writing JSON lines to standard
    error, unless something (a gunicorn ``logconfig_dict``, a test) already gave it handlers.
    It then does not propagate, so a handler on the root logger does not print each line
    twice."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    return logger


def request_id(req: falcon.Request) -> str:
    """The client's ``X-Request-ID`` when it sent a usable one, else 32 new random hex
    digits (128 bits, the size of a trace id)."""
    sent = req.get_header(REQUEST_ID_HEADER)
    if sent is not None and _USABLE_REQUEST_ID.fullmatch(sent):
        return sent
    return secrets.token_hex(16)


#: The request each thread of this process is handling now, by thread id: what the
#: worker-abort hook logs when gunicorn kills a worker at its timeout.
_IN_FLIGHT: dict[int, dict[str, Any]] = {}


def log_aborted(logger: logging.Logger | None = None) -> int:
    """Log (at ERROR, with ``"status": null, "aborted": true``) and count every request
    this process was handling when it was killed at gunicorn's timeout; returns how many."""
    from serve.observability import metrics

    logger = logger or logging.getLogger(ACCESS_LOGGER)
    aborted = list(_IN_FLIGHT.values())
    for fields in aborted:
        started = fields.pop("started")
        duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
        metrics.observe_aborted(fields["method"])
        line = {**fields, "status": None, "duration_ms": duration_ms, "aborted": True}
        logger.error("aborted at the timeout", extra={"request": line})
    _IN_FLIGHT.clear()
    return len(aborted)


class RequestLog:
    """Falcon middleware: gives every request an id (``req.context.request_id``), answers it
    in ``X-Request-ID`` and logs one line per request when the response is ready."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or configure_access_logger()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Stamp the start time and pick the request id."""
        req.context.log_started = time.perf_counter()
        req.context.request_id = request_id(req)
        _IN_FLIGHT[threading.get_ident()] = {
            "request_id": req.context.request_id,
            "method": req.method,
            "path": req.path,
            "started": req.context.log_started,
        }

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Send the request id back and log the line."""
        _IN_FLIGHT.pop(threading.get_ident(), None)
        context = req.context
        identifier = context.get("request_id") or request_id(req)
        resp.set_header(REQUEST_ID_HEADER, identifier)
        if not self._logger.isEnabledFor(logging.INFO):
            return
        started = context.get("log_started")
        duration_ms = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
        fields = {
            "request_id": identifier,
            "method": req.method,
            "route": req.uri_template,
            "path": req.path,
            "status": resp.status_code,
            "duration_ms": round(duration_ms, 3),
            "model": context.get("model"),
            "batch_size": context.get("batch_size"),
        }
        self._logger.info(
            "%s %s %s", req.method, req.path, resp.status_code, extra={"request": fields}
        )
