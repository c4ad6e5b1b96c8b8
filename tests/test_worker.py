"""The keep-alive worker (serve/worker.py), through real gunicorn with a single worker, so
that anything holding the worker shows at once."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import time
import types
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve import bookkeeping
from serve.worker import (
    MAX_REQUESTS_PER_CONNECTION,
    Connection,
    GatheredSocket,
    KeepAliveWorker,
    answered_in_full,
)
from tests.servers import GunicornServer, get_json, gunicorn_server

pytestmark = pytest.mark.slow

#: The server's keep-alive timeout, short so that the expiry test is quick.
KEEPALIVE_SECONDS = 1
LIVE = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"
READY = b"GET /health/ready HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(scope="module")
def server(fake_models: Path) -> Iterator[GunicornServer]:
    with gunicorn_server(
        fake_models, workers=1, args=["--keep-alive", str(KEEPALIVE_SECONDS)]
    ) as running:
        yield running


def connect(server: GunicornServer) -> socket.socket:
    address = urllib.parse.urlsplit(server.base_url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


class Answers:
    """Reads HTTP/1.1 answers (with Content-Length) one after another off one socket."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.pending = b""

    def _fill(self) -> None:
        chunk = self.client.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.pending += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the next answer."""
        while b"\r\n\r\n" not in self.pending:
            self._fill()
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in map(_split, lines)}
        length = int(headers["content-length"])
        while len(self.pending) < length:
            self._fill()
        body, self.pending = self.pending[:length], self.pending[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """True when the server closed the connection with nothing more to read."""
        return not self.pending and self.client.recv(1) == b""


def _split(line: str) -> tuple[str, str, str]:
    return line.partition(":")


def assert_answered_then_closed(client: socket.socket, request_bytes: bytes) -> None:
    """The request gets a 200 saying ``Connection: close``, and the server then closes."""
    answers = Answers(client)
    client.sendall(request_bytes)
    status, headers, _ = answers.next()
    assert status == 200
    assert headers["connection"] == "close"
    assert answers.closed()


def test_a_connection_is_kept_for_several_requests(server: GunicornServer) -> None:
    with connect(server) as client:
        answers = Answers(client)
        for _ in range(3):
            client.sendall(LIVE)
            status, headers, body = answers.next()
            assert status == 200
            assert headers["connection"] == "keep-alive"
            assert json.loads(body) == {"status": "live"}


def test_a_post_with_its_body_keeps_the_connection(server: GunicornServer) -> None:
    """An upload read to its end leaves the connection ready for the next request."""
    upload = b"not an image"
    request = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(upload), upload)
    )
    with connect(server) as client:
        answers = Answers(client)
        client.sendall(request)
        status, headers, body = answers.next()
        assert status == 400
        assert headers["connection"] == "keep-alive"
        assert json.loads(body)["description"]
        client.sendall(LIVE)
        assert answers.next()[0] == 200


def test_an_idle_kept_connection_does_not_hold_the_worker(server: GunicornServer) -> None:
    with connect(server) as idle, connect(server):
        idle.sendall(LIVE)
        assert Answers(idle).next()[0] == 200
        # `idle` stays open after its answer and `silent` never sends: the only worker must
        # still answer someone else.
        status, body = get_json(server.base_url + "/health/live", timeout=KEEPALIVE_SECONDS / 2)
    assert status == 200
    assert body == {"status": "live"}


def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    server: GunicornServer,
) -> None:
    with connect(server) as client, connect(server) as silent:
        answers = Answers(client)
        client.sendall(LIVE)
        assert answers.next()[0] == 200
        started = time.monotonic()
        assert answers.closed()
        assert silent.recv(1) == b""  # Connected but never asked: closed as well.
        waited = time.monotonic() - started
    assert KEEPALIVE_SECONDS * 0.8 <= waited < KEEPALIVE_SECONDS + 3


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        b"GET /health/live HTTP/1.0\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_a_client_that_does_not_keep_alive_gets_the_connection_closed(
    server: GunicornServer, request_bytes: bytes
) -> None:
    with connect(server) as client:
        assert_answered_then_closed(client, request_bytes)


def test_pipelined_requests_are_answered_in_order(server: GunicornServer) -> None:
    closing = b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    with connect(server) as client:
        client.sendall(LIVE + READY + closing)
        answers = Answers(client)
        bodies = [json.loads(answers.next()[2]) for _ in range(3)]
        assert answers.closed()
    assert bodies[0] == bodies[2] == {"status": "live"}
    assert "models" in bodies[1] or bodies[1].get("status") == "ready"


def test_a_connection_is_closed_after_its_request_quota(server: GunicornServer) -> None:
    """So that connections held open for good still pass through accept, and so spread
    over the workers, now and then."""
    with connect(server) as client:
        answers = Answers(client)
        for number in range(1, MAX_REQUESTS_PER_CONNECTION + 1):
            client.sendall(LIVE)
            status, headers, _ = answers.next()
            assert status == 200
            expected = "close" if number == MAX_REQUESTS_PER_CONNECTION else "keep-alive"
            assert headers["connection"] == expected, number
        assert answers.closed()


def test_an_answer_before_the_body_is_read_still_arrives_whole(server: GunicornServer) -> None:
    """A 413 answered before its body arrived closes the connection with gunicorn's lingering
    close, so the rest of the body cannot make the kernel reset the connection over the
    answer."""
    with connect(server) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            b"Content-Length: 67108864\r\n\r\n" + bytes(65536)
        )
        for _ in range(16):  # More of the body keeps coming after the answer was written.
            try:
                client.sendall(bytes(65536))
            except OSError:
                break
        status, headers, body = Answers(client).next()
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body)["description"]


def test_a_stopping_worker_answers_a_request_on_a_kept_connection(fake_models: Path) -> None:
    """After SIGTERM a kept connection stays open a moment (2 s at most), so that a request a
    client was already sending on it is answered, with ``Connection: close``; then the
    connection is closed and the worker exits, without waiting for the 60 s keep-alive."""
    with (
        gunicorn_server(fake_models, workers=1, args=["--keep-alive", "60"]) as running,
        connect(running) as client,
    ):
        answers = Answers(client)
        client.sendall(LIVE)
        assert answers.next()[0] == 200
        (stopping,) = running.worker_pids()
        started = time.monotonic()
        os.kill(stopping, signal.SIGTERM)
        time.sleep(0.3)  # The worker is stopping now.
        client.sendall(LIVE)
        status, headers, _ = answers.next()
        assert status == 200
        assert headers["connection"] == "close"
        assert answers.closed()
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        while stopping in running.worker_pids():
            assert time.monotonic() < deadline, "the stopped worker did not exit"
            time.sleep(0.05)


def test_a_worker_holding_worker_connections_accepts_no_more(fake_models: Path) -> None:
    """Connections that send nothing are held until the keep-alive timeout, but never more
    than ``worker_connections``: the next client waits in the backlog until one expires."""
    with (
        gunicorn_server(
            fake_models,
            workers=1,
            args=["--worker-connections", "2", "--keep-alive", str(KEEPALIVE_SECONDS)],
        ) as running,
        connect(running),
        connect(running),
    ):
        time.sleep(0.2)  # Both are held now.
        started = time.monotonic()
        status, _ = get_json(running.base_url + "/health/live", timeout=10)
        waited = time.monotonic() - started
    assert status == 200
    assert waited >= KEEPALIVE_SECONDS * 0.5


def test_keep_alive_0_closes_after_every_answer(fake_models: Path) -> None:
    with (
        gunicorn_server(fake_models, workers=1, args=["--keep-alive", "0"]) as running,
        connect(running) as client,
    ):
        assert_answered_then_closed(client, LIVE)


def _sockets_held(pid: int) -> int:
    folder = Path(f"/proc/{pid}/fd")
    held = 0
    for descriptor in folder.iterdir():
        with contextlib.suppress(OSError):
            held += os.readlink(descriptor).startswith("socket:")
    return held


def test_kept_connections_are_spread_evenly_over_the_workers(fake_models: Path) -> None:
    """wrk, a connection pool or a proxy opens its connections at once and keeps them: each
    new one goes to the worker holding the fewest, so no worker idles while another queues."""
    with gunicorn_server(fake_models, workers=2, env={"LOG_LEVEL": "debug"}) as running:
        deadline = time.monotonic() + 30
        while running.log().count("accepting, keep-alive") < 2:  # Both workers are up.
            assert time.monotonic() < deadline, running.log()
            time.sleep(0.05)
        workers = running.worker_pids()
        before = {pid: _sockets_held(pid) for pid in workers}
        clients = []
        try:
            for _ in range(8):
                client = connect(running)
                clients.append(client)
                client.sendall(LIVE)
                assert Answers(client).next()[0] == 200
            held = sorted(_sockets_held(pid) - before[pid] for pid in workers)
        finally:
            for client in clients:
                client.close()
    assert held == [4, 4]


@pytest.mark.parametrize(
    ("method", "status", "length", "sent", "whole"),
    [
        ("GET", 200, 17, 17, True),
        ("GET", 200, 17, 5, False),  # Cut short: the next answer would be read as its rest.
        ("GET", 200, None, 5, True),  # Chunked or closed: no length to fall short of.
        ("HEAD", 200, 17, 0, True),
        ("GET", 304, 17, 0, True),
        ("GET", 204, None, 0, True),
    ],
)
def test_an_answer_shorter_than_its_content_length_is_not_whole(
    method: str, status: int, length: int | None, sent: int, whole: bool
) -> None:
    req = types.SimpleNamespace(method=method)
    resp = types.SimpleNamespace(status_code=status, response_length=length, sent=sent)
    assert answered_in_full(req, resp) is whole


class RecordingSocket:
    """A client socket that records each ``sendall`` and ``sendfile`` call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def sendall(self, data: bytes) -> None:
        self.calls.append(("sendall", bytes(data)))

    def sendfile(self, file: object) -> None:
        self.calls.append(("sendfile", b""))


def test_an_answer_written_in_pieces_is_sent_in_one_call() -> None:
    client = RecordingSocket()
    gathered = GatheredSocket(client)  # type: ignore[arg-type]
    gathered.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    gathered.sendall(memoryview(b"ok"))
    assert client.calls == []
    gathered.flush()
    gathered.flush()
    assert client.calls == [("sendall", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]


def test_a_large_body_is_sent_at_once_after_the_headers_and_sendfile_follows_them() -> None:
    client = RecordingSocket()
    gathered = GatheredSocket(client)  # type: ignore[arg-type]
    gathered.sendall(b"headers")
    body = b"x" * (1 << 20)
    gathered.sendall(body)
    assert client.calls == [("sendall", b"headers"), ("sendall", body)]
    gathered.sendall(b"more headers")
    gathered.sendfile(object())
    assert client.calls[2:] == [("sendall", b"more headers"), ("sendfile", b"")]


def test_a_ready_key_left_over_from_before_a_close_or_a_new_keep_is_ignored() -> None:
    worker = object.__new__(KeepAliveWorker)
    worker._idle = collections.OrderedDict()
    resumed: list[Connection] = []
    worker._resume = resumed.append  # type: ignore[method-assign]

    def connection(idle_since: float) -> Connection:
        return Connection(socket.socket(), None, None, None, idle_since=idle_since)  # type: ignore[arg-type]

    idle, closed, kept_again = connection(1.0), connection(1.0), connection(5.0)
    try:
        for kept in (idle, kept_again):
            worker._idle[kept.client] = kept
        for ready in (idle, closed, kept_again):
            worker._resume_ready(ready, selected_at=2.0)
        assert resumed == [idle]
    finally:
        for each in (idle, closed, kept_again):
            each.client.close()


def test_a_client_finds_its_request_logged_when_its_answer_arrives(
    server: GunicornServer,
) -> None:
    with connect(server) as client:
        answers = Answers(client)
        for index in range(5):
            identifier = f"logged-before-answered-{index}"
            client.sendall(
                LIVE.replace(b"\r\n\r\n", f"\r\nX-Request-ID: {identifier}\r\n\r\n".encode())
            )
            status, _, _ = answers.next()
            assert status == 200
            assert f'"request_id":"{identifier}"' in server.log()


class ReadySelector:
    """A selector stand-in: reports ``ready`` for every poll and records the timeouts."""

    def __init__(self, ready: list[tuple[object, int]]) -> None:
        self.ready = ready
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> list[tuple[object, int]]:
        self.timeouts.append(timeout)
        return self.ready


@pytest.fixture()
def held() -> Iterator[list[list[int]]]:
    """Bookkeeping held, as in a worker, with one item waiting; yields what gets written."""
    written: list[list[int]] = []
    queue = bookkeeping.Deferred(written.append)
    bookkeeping.hold()
    queue.add(1)
    try:
        yield written
    finally:
        bookkeeping.release()
        del queue


def _worker_with(selector: ReadySelector) -> KeepAliveWorker:
    worker = object.__new__(KeepAliveWorker)
    worker._selector = selector  # type: ignore[assignment]
    worker._idle = collections.OrderedDict()
    worker._listening_again_at = None
    worker.cfg = types.SimpleNamespace(keepalive=5)  # type: ignore[assignment]
    return worker


def test_bookkeeping_is_written_before_an_answer_when_nothing_else_waits(
    held: list[list[int]],
) -> None:
    _worker_with(ReadySelector([]))._write_bookkeeping_if_idle()
    assert held == [[1]]


def test_bookkeeping_stays_held_while_another_request_waits(held: list[list[int]]) -> None:
    _worker_with(ReadySelector([(object(), 1)]))._write_bookkeeping_if_idle()
    assert held == []


def test_bookkeeping_is_written_before_the_worker_waits(held: list[list[int]]) -> None:
    selector = ReadySelector([])
    assert _worker_with(selector)._wait(0.5) == []
    assert held == [[1]]
    assert selector.timeouts == [0, 0.5]


def test_ready_work_is_taken_before_held_bookkeeping(held: list[list[int]]) -> None:
    ready = [(object(), 1)]
    selector = ReadySelector(ready)
    assert _worker_with(selector)._wait(0.5) == ready
    assert held == []
    assert selector.timeouts == [0]
