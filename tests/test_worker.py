"""The sync worker's connection close (serve/worker.py), through real gunicorn, one worker."""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import GunicornServer, get_json, gunicorn_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(fake_models: Path) -> Iterator[GunicornServer]:
    """gunicorn with a single worker: anything that holds it shows at once."""
    with gunicorn_server(fake_models, workers=1) as running:
        yield running


def connect(server: GunicornServer) -> socket.socket:
    address = urllib.parse.urlsplit(server.base_url)
    return socket.create_connection((address.hostname, address.port), timeout=10)


def read_to_end(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_keeping_its_socket_open_does_not_hold_the_worker(
    server: GunicornServer,
) -> None:
    """gunicorn's lingering close would keep the only worker waiting (2 s) for this client
    to close; the request was read to its end, so the worker closes and moves on."""
    with connect(server) as idle:
        idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_to_end(idle).startswith(b"HTTP/1.1 200")
        # `idle` stays open while another client asks, with less patience than the linger.
        status, body = get_json(server.base_url + "/health/live", timeout=1.5)
    assert status == 200
    assert body == {"status": "live"}


def test_an_answer_before_the_body_is_read_still_arrives_whole(server: GunicornServer) -> None:
    """A 413 answered before its body arrived keeps gunicorn's lingering close, so the rest
    of the body cannot make the kernel reset the connection over the answer."""
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
        answer = read_to_end(client)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["description"]


def test_pipelined_requests_get_the_first_answer_whole(server: GunicornServer) -> None:
    """A sync worker answers one request per connection; a second one sent right behind it
    must not cost the client the first answer."""
    with connect(server) as client:
        client.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n" * 2)
        answer = read_to_end(client)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"status": "live"}
