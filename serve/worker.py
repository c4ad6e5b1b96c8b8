"""gunicorn's sync worker, closing a finished connection at once and answering in one segment.

gunicorn (>= 24) ends every sync-worker connection with ``util.close_graceful``: it sends FIN,
then blocks on ``recv`` until the client closes too (up to 2 s), so that request bytes still
unread cannot make the kernel answer RST and cut off the response. That wait is only needed
when such bytes exist. Otherwise it keeps the worker from the next connection for a round trip
to the client, and for the full 2 s when a client keeps its socket open after the answer
(tests/test_worker.py). This worker closes at once when the request was read to its end and
nothing else waits, and keeps gunicorn's lingering close for every other case (a body answered
before it was read, such as a 413, or bytes already waiting in the socket).

It also corks the socket while gunicorn writes the answer, so that the status line and
headers, which gunicorn sends on their own, leave in one TCP segment with the body.

Use it with ``worker_class = "serve.worker.SyncWorker"`` (``gunicorn.conf.py`` does).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers import sync

_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)


def body_read_to_end(req: Any) -> bool:
    """True when the request's body (none counts) has been read to its last byte; False when
    some may still be on its way, or the reader is one this check does not know."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        return reader.length == 0
    if isinstance(reader, ChunkedReader):
        return reader.parser is None
    return False


def bytes_waiting(client: socket.socket) -> bool:
    """Whether the client sent anything not read yet (or the socket cannot tell)."""
    try:
        return bool(client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except OSError:
        return True


def cork(client: socket.socket, on: bool) -> None:
    """Hold (``on``) or release the socket's partial frames (Linux ``TCP_CORK``), so that
    the status line, headers and body gunicorn writes separately leave as one segment."""
    if _TCP_CORK is not None:
        with contextlib.suppress(OSError):  # Already closed: nothing left to hold.
            client.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, int(on))


class SyncWorker(sync.SyncWorker):
    """gunicorn's sync worker with the quick close and the corked answer described above."""

    def handle_request(self, listener: Any, req: Any, client: socket.socket, addr: Any) -> None:
        """Answer the request as gunicorn does, then close the connection at once when the
        request was read to its end and nothing else waits; gunicorn's lingering close,
        which runs next, finds the socket closed and has nothing left to do."""
        cork(client, True)
        try:
            super().handle_request(listener, req, client, addr)
        finally:
            cork(client, False)
        if body_read_to_end(req) and not bytes_waiting(client):
            client.close()
