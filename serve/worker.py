"""A gunicorn worker that answers one request at a time, as the sync worker does, and keeps
the client's connection open between requests (HTTP/1.1 keep-alive).

gunicorn's sync worker closes every connection after one answer, so each request costs a new
TCP connection: connect, accept and close on both sides. This worker has no threads and no
event loop for requests either; it waits on one selector holding the listening sockets and the
idle kept connections, and serves a single request from whichever is ready, then waits again.
A slow request still holds the worker, as in the sync worker: put it behind a buffering proxy
(README, Slow clients). The rules:

- A connection is kept when the client allows it (HTTP/1.1, or ``Connection: keep-alive``),
  the request was read to its end, the answer carried all the body it announced, the worker
  is not shutting down, the connection has served fewer than ``MAX_REQUESTS_PER_CONNECTION``
  requests (so that connections come back through ``accept`` now and then and spread over the
  workers) and the worker holds fewer than ``worker_connections`` (gunicorn setting) kept
  connections. The answer says which.
- A new connection goes to the worker holding the fewest (serve/balance.py); a worker holding
  ``worker_connections`` accepts none until one closes. Out of file descriptors, it closes
  its oldest idle connection and stops accepting for a moment instead of failing.
- A kept connection that stays idle for ``keepalive`` seconds (gunicorn setting) is closed;
  so is a new connection that sends nothing for as long. Until its first bytes arrive, a new
  connection waits in the selector too, so a client that connects ahead of its request (a
  browser's preconnect) does not hold the worker. ``--keep-alive 0`` turns all of this off:
  every connection is then served at once and closed after one answer, as the sync worker
  does.
- A request sent behind another on the same connection (pipelining) is answered next, in order.
- When a connection ends after a request that was read to its end, with nothing else waiting,
  it is closed at once. Otherwise gunicorn's lingering close (``util.close_graceful``) lets the
  client read the answer before unread request bytes could make the kernel reset it.
- An answer's status line and headers, which gunicorn sends on their own, are held back
  and sent with the first piece of the body, in one call and one TCP segment.
- A request's metrics and access-log line are held in memory while other requests wait for
  the worker, and written out in batches (serve/bookkeeping.py): before an answer leaves
  with no other request ready, before the worker waits for work, under load before a
  request once they have waited ``bookkeeping.MAX_DELAY`` seconds, and when it exits.
- On SIGTERM the request in progress is answered, and for ``_SHUTDOWN_LINGER`` seconds so
  is any request arriving on a kept connection (with ``Connection: close``); then the idle
  connections are closed. SIGQUIT, SIGINT and the arbiter's SIGABRT end the worker at once.

Use it with ``worker_class = "serve.worker.KeepAliveWorker"`` (``gunicorn.conf.py`` does).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import errno
import io
import os
import selectors
import socket
import ssl
import time
from typing import Any

from gunicorn import http, sock, util
from gunicorn.http import wsgi
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers import sync

from serve import bookkeeping
from serve.balance import ConnectionTally

#: A connection is closed after this many requests, so that a client holding connections
#: open for good still has them spread over the workers by ``accept`` from time to time.
MAX_REQUESTS_PER_CONNECTION = 100
#: How long the worker may wait in its selector before it tells the arbiter it is alive,
#: and how often at most it tells it while busy.
_MAX_WAIT = 1.0
_HEARTBEAT = 0.5
#: A worker holding more connections than another leaves a new one to it, looking again
#: every ``_DEFER_PAUSE`` seconds, and takes it itself after ``_MAX_DEFER`` seconds (the
#: other worker may be busy with a long request).
_DEFER_PAUSE = 0.002
_MAX_DEFER = 0.02
#: Out of file descriptors (or socket memory), the worker stops accepting for this long.
_STARVED_PAUSE = 0.1
_STARVED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: A stopping worker keeps its idle connections this long (at most ``keepalive``), so that a
#: request a client is already sending on one is answered (``Connection: close``).
_SHUTDOWN_LINGER = 2.0
#: An answer's bytes are gathered while they are fewer than this; larger data is sent at once.
_GATHER_LIMIT = 64 * 1024
#: Connections held per worker, shared by the master's forks (serve/balance.py).
TALLY = ConnectionTally()


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
    """Whether the client sent anything not read yet (or the socket cannot tell: a TLS
    socket takes no flags)."""
    try:
        return bool(client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


class GatheredSocket:
    """Stands in for the client socket while gunicorn writes an answer. What it sends (the
    status line and headers, then the body) is gathered until :meth:`flush`, so that a
    small answer leaves in one ``sendall``; data of ``_GATHER_LIMIT`` bytes or more is sent
    at once, after what was gathered, without copying. Anything else asked of it
    (``send``, ``sendfile``, ``fileno``) flushes first and is the real socket's."""

    def __init__(self, client: socket.socket) -> None:
        self._client = client
        self._parts: list[bytes] = []
        self._size = 0

    def sendall(self, data: bytes) -> None:
        """Gather ``data``, or send it now (after what was gathered) when it is large."""
        if self._size + len(data) >= _GATHER_LIMIT:
            self.flush()
            if len(data) >= _GATHER_LIMIT:
                self._client.sendall(data)
                return
        self._parts.append(bytes(data))
        self._size += len(data)

    def flush(self) -> None:
        """Send everything gathered, in one call."""
        if self._parts:
            data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._parts.clear()
            self._size = 0
            self._client.sendall(data)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._client, name)


def answered_in_full(req: Any, resp: Any) -> bool:
    """Whether the app sent all the body its Content-Length announced (a shorter body would
    leave the client reading the next answer as the rest of this one)."""
    status = resp.status_code
    if req.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return True
    return resp.response_length is None or resp.sent >= resp.response_length


def buffered(parser: Any) -> bool:
    """Whether the parser already holds bytes of a next request (pipelined behind the last)."""
    buffer: io.BytesIO = parser.unreader.buf
    return buffer.seek(0, io.SEEK_END) > 0


@dataclasses.dataclass(eq=False)
class Connection:
    """One client connection and its request parser, which lives as long as the connection."""

    client: socket.socket
    address: Any
    #: The address of the listener it came from (``getsockname``), for the WSGI environ.
    server: Any
    parser: Any
    served: int = 0
    idle_since: float = 0.0
    #: Whether the selector watches it; it does from the first time it is kept to its close.
    watched: bool = False


class KeepAliveWorker(sync.SyncWorker):
    """gunicorn's sync worker, one request at a time, with kept connections (module doc)."""

    def run(self) -> None:
        """Wait on the listeners and the kept connections; serve whichever is ready."""
        if "h2" in self.cfg.http_protocols:
            self.log.warning("HTTP/2 is not supported by this worker: HTTP/1.1 only.")
        self._selector = selectors.DefaultSelector()
        self._idle: collections.OrderedDict[socket.socket, Connection] = collections.OrderedDict()
        self._held = 0  # Connections open: the idle ones and the one being served.
        self._deferring_since: float | None = None
        self._listening_again_at: float | None = None
        self._last_heartbeat = -_HEARTBEAT
        self._names = {listener: listener.getsockname() for listener in self.sockets}
        for listener in self.sockets:
            listener.setblocking(False)
        self._listen()
        self._selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        TALLY.join(self.age)
        bookkeeping.hold()
        self.log.debug("Worker %s accepting, keep-alive %s s", os.getpid(), self.cfg.keepalive)
        try:
            while self.alive:
                self._heartbeat()
                TALLY.publish(self._held)
                again = self._listening_again_at
                if again is not None and time.monotonic() >= again:
                    self._listen()
                ready = self._wait(self._wait_seconds())
                self._handle(ready, time.monotonic())
                self._close_expired()
                if not self.is_parent_alive():
                    break
            self._finish()
        finally:
            bookkeeping.release()  # Written out now, and anything later at once.
            TALLY.leave()
            self._selector.close()

    def _wait(self, seconds: float) -> list[tuple[selectors.SelectorKey, int]]:
        """What is ready, waiting up to ``seconds``; when nothing is ready yet, the held
        bookkeeping is written out first."""
        if bookkeeping.held():
            ready = self._selector.select(0)
            if ready:
                return ready
            bookkeeping.flush()
        return self._selector.select(seconds)

    def _handle(self, ready: list[tuple[selectors.SelectorKey, int]], selected_at: float) -> None:
        """Serve the ready connections and accept from the ready listeners (selected at
        ``selected_at``); once the worker is stopping, leave what is left to :meth:`_finish`."""
        listening = self._listening_again_at is None
        accepting = False
        for key, _ in ready:
            if not self.alive:
                return
            if key.data is None:
                self._drain_wake_pipe()
            elif isinstance(key.data, Connection):
                self._resume_ready(key.data, selected_at)
            elif self._listening_again_at is None:  # Not paused by an earlier listener.
                accepting = True
                if self._may_accept():
                    self._accept(key.data)
                else:
                    self._pause_listening()
        if listening and not accepting:
            self._deferring_since = None  # No connection was waiting for this worker.

    def _may_accept(self) -> bool:
        """Whether to take a waiting connection: when no other worker holds fewer, or when
        those that do have left it waiting ``_MAX_DEFER`` seconds. Never while the worker
        holds ``worker_connections`` already."""
        if self._held >= self.cfg.worker_connections:
            return False
        fewest = TALLY.fewest_elsewhere()
        if fewest is None or self._held <= fewest:
            self._deferring_since = None
            return True
        now = time.monotonic()
        if self._deferring_since is None:
            self._deferring_since = now
        if now - self._deferring_since >= _MAX_DEFER:
            self._deferring_since = None
            return True
        return False

    def _listen(self) -> None:
        """Watch the listening sockets (again)."""
        for listener in self.sockets:
            self._selector.register(listener, selectors.EVENT_READ, listener)
        self._listening_again_at = None

    def _pause_listening(self, seconds: float = _DEFER_PAUSE) -> None:
        """Stop watching the listening sockets for ``seconds``."""
        if self._listening_again_at is None:
            for listener in self.sockets:
                self._selector.unregister(listener)
        self._listening_again_at = time.monotonic() + seconds

    def _wait_seconds(self) -> float:
        """Until the oldest idle connection expires or the listeners are watched again, at
        most ``_MAX_WAIT``."""
        deadlines = [time.monotonic() + _MAX_WAIT]
        if self._idle:
            oldest = next(iter(self._idle.values()))
            deadlines.append(oldest.idle_since + self.cfg.keepalive)
        if self._listening_again_at is not None:
            deadlines.append(self._listening_again_at)
        return max(0.0, min(deadlines) - time.monotonic())

    def _heartbeat(self) -> None:
        """Tell the arbiter this worker is alive (a file's mtime), at most every
        ``_HEARTBEAT`` seconds."""
        now = time.monotonic()
        if now - self._last_heartbeat >= _HEARTBEAT:
            self.notify()
            self._last_heartbeat = now

    def _count(self, change: int) -> None:
        """One connection more (1) or fewer (-1): tell the other workers."""
        self._held += change
        TALLY.publish(self._held)

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(self.PIPE[0], 64)

    def _accept(self, listener: socket.socket) -> None:
        """Take one new connection (another worker may have taken it first) and serve its
        request, or hold it until the request arrives."""
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            if error.errno in _STARVED:
                self.log.warning("Cannot accept a connection (%s): closing the oldest idle", error)
                self._expire(limit=1)
                self._pause_listening(_STARVED_PAUSE)
                return
            raise
        client.setblocking(True)
        util.close_on_exec(client)
        try:
            if self.cfg.is_ssl:
                client = sock.ssl_wrap_socket(client, self.cfg)
            parser = http.get_parser(self.cfg, client, address)
        except BaseException as error:  # A failed TLS handshake, for one.
            self.handle_error(None, client, address, error)
            util.close_graceful(client)
            return
        self._count(1)
        connection = Connection(client, address, self._names[listener], parser)
        if self.cfg.keepalive > 0 and not bytes_waiting(client):
            self._keep(connection)  # Connected ahead of its request (a browser's preconnect).
        else:
            self._serve(connection)

    def _resume_ready(self, connection: Connection, selected_at: float) -> None:
        """Resume a connection the selector found readable at ``selected_at``, unless it
        has been closed, or served and kept again, since (by an earlier ready key)."""
        if self._idle.get(connection.client) is connection and connection.idle_since < selected_at:
            self._resume(connection)

    def _resume(self, connection: Connection) -> None:
        """A kept connection became readable: its next request (or its close) is here. It
        stays in the selector, which is not consulted while the request is served."""
        del self._idle[connection.client]
        self._serve(connection)

    def _serve(self, connection: Connection) -> None:
        """Answer the connection's requests while they are already here, then keep it idle
        or close it."""
        keep = self._serve_one(connection)
        while keep and buffered(connection.parser):
            keep = self._serve_one(connection)
        if keep:
            self._keep(connection)

    def _keep(self, connection: Connection) -> None:
        """Hold the connection idle until its next request, for ``keepalive`` seconds."""
        connection.idle_since = time.monotonic()
        self._idle[connection.client] = connection
        if not connection.watched:
            self._selector.register(connection.client, selectors.EVENT_READ, connection)
            connection.watched = True

    def _serve_one(self, connection: Connection) -> bool:
        """Read and answer one request; True when the connection stays open for another.
        Errors are answered and logged as gunicorn's sync worker does, and end the
        connection."""
        self._heartbeat()  # Many requests may be served before the selector is polled again.
        client, address = connection.client, connection.address
        req = None
        try:
            req = next(connection.parser)
            keep = self.answer(connection, req)
        except http.errors.NoMoreData as error:
            self.log.debug("Ignored premature client disconnection. %s", error)
            keep = False
        except StopIteration as error:
            self.log.debug("Closing connection. %s", error)
            keep = False
        except ssl.SSLError as error:
            if error.args[0] != ssl.SSL_ERROR_EOF:
                self.handle_error(req, client, address, error)
            keep = False
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
            else:
                self.log.debug("Ignoring socket error: %s", error)
            keep = False
        except BaseException as error:
            self.handle_error(req, client, address, error)
            if isinstance(error, (SystemExit, KeyboardInterrupt)):  # SIGQUIT, SIGINT, SIGABRT
                self._close(connection, req)
                raise
            keep = False
        if not keep:
            self._close(connection, req)
        return keep

    def answer(self, connection: Connection, req: Any) -> bool:
        """Answer one parsed request as gunicorn's sync worker does (hooks, access log,
        max_requests), but with the answer sent in one call and the connection kept when
        the rules allow; True when it is kept."""
        environ: dict[str, Any] = {}
        resp = None
        connection.served += 1
        try:
            bookkeeping.flush_if_overdue()  # Under load, before this request can take long.
            self.cfg.pre_request(self, req)
            request_start = datetime.datetime.now()
            resp, environ = wsgi.create(
                req, connection.client, connection.address,
                connection.server, self.cfg,
            )  # fmt: skip
            self.nr += 1
            if self.nr >= self.max_requests:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            respiter = self.wsgi(environ, resp.start_response)
            self._write_bookkeeping_if_idle()
            gathered = GatheredSocket(connection.client)
            resp.sock = gathered  # The answer; early hints and 100 Continue go straight out.
            try:
                try:
                    # Decided after the app ran (it reads the body) and before the headers
                    # are written (they say whether the connection stays open).
                    if not self._may_keep(connection, req):
                        resp.force_close()
                    if isinstance(respiter, environ["wsgi.file_wrapper"]):
                        resp.write_file(respiter)
                    else:
                        for item in respiter:
                            resp.write(item)
                            gathered.flush()  # A streamed body leaves as it is made.
                    resp.close()
                finally:
                    self.log.access(resp, req, environ, datetime.datetime.now() - request_start)
                    if hasattr(respiter, "close"):
                        respiter.close()
            finally:
                gathered.flush()
        except OSError:
            raise
        except Exception:
            if resp and resp.headers_sent:
                # Writing a 500 after the answer began would corrupt it: drop the connection.
                self.log.exception("Error handling request")
                return False
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return not resp.should_close() and answered_in_full(req, resp)

    def _write_bookkeeping_if_idle(self) -> None:
        """Write out the held bookkeeping before an answer leaves when no other request is
        ready, so that a client that waits for its answer finds its request counted and
        logged."""
        if bookkeeping.held() and not self._selector.select(0):
            bookkeeping.flush()

    def _may_keep(self, connection: Connection, req: Any) -> bool:
        """Whether the rules (module doc) let this connection stay open after this request."""
        return (
            self.alive
            and self.cfg.keepalive > 0
            and not self.cfg.is_ssl
            and connection.served < MAX_REQUESTS_PER_CONNECTION
            and len(self._idle) < self.cfg.worker_connections
            and body_read_to_end(req)
        )

    def _close(self, connection: Connection, req: Any) -> None:
        """Close at once when the request was read to its end and nothing else waits;
        otherwise linger as gunicorn does, so the client can still read the answer."""
        self._count(-1)
        self._unwatch(connection)
        client = connection.client
        finished = req is not None and body_read_to_end(req) and not buffered(connection.parser)
        if finished and not bytes_waiting(client):
            client.close()
            return
        util.close_graceful(client)

    def _unwatch(self, connection: Connection) -> None:
        """Take a connection about to close out of the selector."""
        if connection.watched:
            self._selector.unregister(connection.client)
            connection.watched = False

    def _close_expired(self) -> None:
        """Close the kept connections idle for ``keepalive`` seconds or more."""
        self._expire(idle_since=time.monotonic() - self.cfg.keepalive)

    def _expire(self, idle_since: float = float("inf"), limit: int | None = None) -> None:
        """Close the idle connections, oldest first, that went idle before ``idle_since``
        (at most ``limit`` of them). One whose client has just sent a request is served
        instead."""
        closed = 0
        for _ in range(len(self._idle)):  # Each at most once, even those served and kept.
            if not self._idle or (limit is not None and closed >= limit):
                break
            client, connection = next(iter(self._idle.items()))
            if connection.idle_since >= idle_since:
                break
            if bytes_waiting(client):
                self._resume(connection)  # Served, then kept (at the back) or closed.
                continue
            del self._idle[client]
            self._unwatch(connection)
            client.close()
            self._count(-1)
            closed += 1

    def _finish(self) -> None:
        """Shutting down: stop accepting; for ``_SHUTDOWN_LINGER`` seconds (at most the
        keep-alive timeout) answer the requests that arrive on kept connections, each with
        ``Connection: close``; then close the idle ones left."""
        if self._listening_again_at is None:
            self._pause_listening(float("inf"))
        deadline = time.monotonic() + min(_SHUTDOWN_LINGER, self.cfg.keepalive)
        while self._idle and (remaining := deadline - time.monotonic()) > 0:
            self._heartbeat()
            for key, _ in self._wait(min(remaining, _MAX_WAIT)):
                if key.data is None:
                    self._drain_wake_pipe()
                elif isinstance(key.data, Connection):
                    self._resume_ready(key.data, float("inf"))
        self._expire()
