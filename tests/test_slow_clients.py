"""Slow, unfinished and idle clients: absorbed by the shipped nginx in front of gunicorn
(deploy/run-behind-nginx.sh), and bounded by timeouts on bare gunicorn.

Through nginx, 1,400 connections held open (a request line trickling, a head with half
its body, nothing at all) do not delay a legitimate /health/ready or /predict, and the
workers that served them are the ones that started."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.images import encoded
from tests.servers import (
    RUN_BEHIND_NGINX,
    GunicornServer,
    encode_multipart,
    gunicorn_server,
    request,
)

pytestmark = pytest.mark.slow

HELD_CONNECTIONS = 1400
LEGIT_LIMIT_SECONDS = 0.5
INSTALL_NGINX = (
    "nginx is not installed: install it (Debian/Ubuntu: apt-get install nginx; Fedora: "
    "dnf install nginx; macOS: brew install nginx) to run the slow-client tests"
)


def _nginx_or_skip() -> None:
    """Skip without nginx (fail under CI=true, where it must be installed)."""
    if Path("/usr/sbin/nginx").exists() or shutil.which("nginx"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(INSTALL_NGINX)
    pytest.skip(INSTALL_NGINX)


def _raise_open_file_limit(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE up to ``needed`` (at most the hard limit);
    skip when the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files; the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _digit_png() -> bytes:
    from PIL import Image

    image = Image.new("L", (28, 28), 0)
    image.paste(255, (12, 4, 16, 24))
    return encoded(image)


@contextlib.contextmanager
def behind_nginx(upstream: GunicornServer) -> Iterator[str]:
    """nginx through the shipped script in front of ``upstream``; skips without nginx."""
    _nginx_or_skip()
    assert RUN_BEHIND_NGINX.exists(), f"{RUN_BEHIND_NGINX} is missing"
    with servers.behind_nginx(upstream.base_url) as base_url:
        yield base_url


class HeldConnections:
    """Connections a slow, unfinished or idle client holds open: a third trickle a
    request line a byte at a time, a third sent a head with Content-Length and half the
    body, the rest sent nothing."""

    def __init__(self, base_url: str, count: int) -> None:
        host, port = base_url.rsplit("/", 1)[1].split(":")
        self.sockets: list[socket.socket] = []
        self._trickling: list[socket.socket] = []
        self._stop = threading.Event()
        half_body = (
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            b"Content-Length: 20000\r\n\r\n" + bytes(10000)
        )
        for index in range(count):
            connection = socket.create_connection((host, int(port)), timeout=10)
            self.sockets.append(connection)
            if index % 3 == 0:
                connection.sendall(b"G")
                self._trickling.append(connection)
            elif index % 3 == 1:
                connection.sendall(half_body)
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        line = b"ET /health/ready HTTP/1.1\r\nHost: test\r\n"
        for byte in range(len(line)):
            for connection in self._trickling:
                with contextlib.suppress(OSError):
                    connection.send(line[byte : byte + 1])
            if self._stop.wait(0.5):
                return

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self._stop.set()
        self._thread.join()
        for connection in self.sockets:
            connection.close()


def _timed(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, bytes, float]:
    """Send one request; returns (status, body, seconds it took)."""
    started = time.monotonic()
    status, _, answer = request(method, url, body, headers, timeout=timeout)
    return status, answer, time.monotonic() - started


def test_held_connections_through_nginx_do_not_delay_legitimate_requests(
    fake_models: Path,
) -> None:
    _nginx_or_skip()
    _raise_open_file_limit(HELD_CONNECTIONS + 512)
    body, content_type = encode_multipart([("file", "one.png", _digit_png())])
    with gunicorn_server(fake_models, workers=2) as upstream, behind_nginx(upstream) as proxy:
        workers = sorted(upstream.worker_pids())
        held = HeldConnections(proxy, HELD_CONNECTIONS)
        try:
            time.sleep(1.0)
            timings = []
            for _ in range(3):
                status, _, seconds = _timed("GET", proxy + "/health/ready")
                assert status == 200
                timings.append(("ready", seconds))
                status, answer, seconds = _timed(
                    "POST", proxy + "/predict", body, {"Content-Type": content_type}
                )
                assert status == 200, answer
                assert 0 <= json.loads(answer)["label"] <= 9
                timings.append(("predict", seconds))
        finally:
            held.close()
        slow = [(name, round(seconds, 3)) for name, seconds in timings if seconds >= 0.5]
        assert not slow, f"legitimate requests over {LEGIT_LIMIT_SECONDS} s: {slow}"
        assert sorted(upstream.worker_pids()) == workers


def test_expect_continue_over_the_limit_is_a_413_without_100_continue_through_nginx(
    fake_models: Path,
) -> None:
    """50 MB announced with ``Expect: 100-continue``: nginx refuses from the head; the
    client is never invited to send the body."""
    with gunicorn_server(fake_models, workers=2) as upstream, behind_nginx(upstream) as proxy:
        host, port = proxy.rsplit("/", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                b"Content-Length: 52428800\r\nExpect: 100-continue\r\n\r\n"
            )
            answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_stalled_request_heads_are_dropped_on_bare_gunicorn(fake_models: Path) -> None:
    """On bare gunicorn with one worker, an unfinished request line holding that worker is
    dropped after the socket stall timeout: its connection is closed and a legitimate request
    queued behind it is answered."""
    with gunicorn_server(fake_models, workers=1) as server:
        workers = sorted(server.worker_pids())
        host, port = server.base_url.rsplit("/", 1)[1].split(":")
        stalled = [socket.create_connection((host, int(port)), timeout=20)]
        try:
            for connection in stalled:
                connection.sendall(b"GET /health/re")
            time.sleep(0.5)
            # Queued behind the stalled head until the stall timeout drops it.
            status, _, seconds = _timed("GET", server.base_url + "/health/ready", timeout=30)
            for connection in stalled:
                assert connection.recv(1024) == b"", "a stalled connection was kept open"
        finally:
            for connection in stalled:
                connection.close()
        assert status == 200
        # The stall timeout (10 s), gunicorn's wait for the client to close (2 s), the answer.
        assert seconds < 20
        assert sorted(server.worker_pids()) == workers
