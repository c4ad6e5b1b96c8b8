"""Faults through real gunicorn: a worker killed with SIGKILL and a SIGHUP reload of the
models under load, a SIGTERM with requests in flight, a request past the worker timeout.
Bounded: a few seconds each."""

from __future__ import annotations

import collections
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from tests.fakes import write_fake_model
from tests.servers import (
    GunicornServer,
    encode_multipart,
    get_json,
    gunicorn_server,
    request,
)

pytestmark = pytest.mark.slow

CLIENTS = 4


def _digit_upload() -> tuple[bytes, str]:
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 12:16] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return encode_multipart([("file", "one.png", buffer.getvalue())])


class Load:
    """``CLIENTS`` threads posting a digit to /predict in a loop, one connection per request,
    recording each outcome: an HTTP status, or the name of the connection error."""

    def __init__(self, base_url: str) -> None:
        self._url = base_url + "/predict"
        self._body, content_type = _digit_upload()
        self._headers = {"Content-Type": content_type}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self._stop.is_set():
            try:
                outcome = str(request("POST", self._url, self._body, self._headers, 20)[0])
            except (OSError, http.client.HTTPException) as error:
                # A connection cut mid-answer (a killed worker) is a lost request, not a crash.
                outcome = type(error).__name__
            with self._lock:
                self.outcomes[outcome] += 1

    def successes(self) -> int:
        """Requests answered 200 so far."""
        with self._lock:
            return self.outcomes["200"]

    def failures(self) -> dict[str, int]:
        """Every outcome other than a 200, with its count."""
        with self._lock:
            return {key: count for key, count in self.outcomes.items() if key != "200"}

    def wait_for(self, successes: int, timeout: float = 20.0) -> None:
        """Block until ``successes`` more requests have been answered 200."""
        target = self.successes() + successes
        deadline = time.monotonic() + timeout
        while self.successes() < target:
            assert time.monotonic() < deadline, f"load stalled: {dict(self.outcomes)}"
            time.sleep(0.02)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        """Run the clients for the duration of the ``with`` block."""
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(30)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _served_version(server: GunicornServer) -> str:
    status, metadata = get_json(server.base_url + "/v2/models/cnn")
    assert status == 200
    return str(metadata["versions"][0])


def test_a_killed_worker_loses_only_its_request_and_is_replaced(fake_models: Path) -> None:
    with gunicorn_server(fake_models, workers=2) as server:
        workers = server.worker_pids()
        with Load(server.base_url).running() as load:
            load.wait_for(50)
            os.kill(workers[0], signal.SIGKILL)
            _wait_until(
                lambda: len(set(server.worker_pids()) - set(workers)) == 1, 20, "a new worker"
            )
            load.wait_for(50)
        # A sync worker holds one connection: only the request it was handling is lost;
        # those waiting in the listening socket's backlog go to the other worker.
        failures = load.failures()
        assert sum(failures.values()) <= 1, failures
        assert not any(key.startswith("5") for key in failures), failures
        assert workers[1] in server.worker_pids()
        body, content_type = _digit_upload()
        for _ in range(10):
            status, _, _ = request(
                "POST", server.base_url + "/predict", body, {"Content-Type": content_type}
            )
            assert status == 200


def test_sighup_reloads_models_without_dropping_requests(fake_models: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    shutil.copytree(fake_models, model_dir)
    with gunicorn_server(model_dir, workers=2) as server:
        assert _served_version(server) == "1"
        old_workers = set(server.worker_pids())
        with Load(server.base_url).running() as load:
            load.wait_for(30)
            new_model = write_fake_model(tmp_path / "cnn.onnx", "cnn", "nhwc", seed=7, version="2")
            os.replace(new_model, model_dir / "cnn.onnx")
            os.kill(server.pid, signal.SIGHUP)
            _wait_until(
                lambda: (
                    not old_workers & set(server.worker_pids()) and len(server.worker_pids()) == 2
                ),
                30,
                "the old workers to be replaced",
            )
            load.wait_for(30)
        assert load.failures() == {}
        assert _served_version(server) == "2"


def _start_slow_upload(base_url: str, body: bytes, content_type: str) -> socket.socket:
    """Open a connection and send the head and half of the body, leaving it in flight."""
    address = urlsplit(base_url)
    connection = socket.create_connection((address.hostname, address.port), timeout=30)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    connection.sendall(head + body[: len(body) // 2])
    return connection


def _finish_upload(connection: socket.socket, body: bytes) -> tuple[int, dict[str, object]]:
    """Send the rest of the body and read the whole answer; returns (status, JSON body)."""
    with connection:
        connection.sendall(body[len(body) // 2 :])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(payload)


def test_sigterm_drains_requests_in_flight_before_exit(fake_models: Path) -> None:
    with gunicorn_server(fake_models, workers=2) as server:
        body, content_type = _digit_upload()
        # One slow upload per sync worker: both workers are mid-request when TERM arrives.
        slow = [_start_slow_upload(server.base_url, body, content_type) for _ in range(2)]
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "gunicorn exited with requests in flight"
        answers = [_finish_upload(connection, body) for connection in slow]
        assert [status for status, _ in answers] == [200, 200]
        assert all(answer["label"] in range(10) for _, answer in answers)
        assert server.process.wait(30) == 0


def test_a_request_past_the_worker_timeout_is_killed_logged_and_counted(
    fake_models: Path,
) -> None:
    """A client that trickles its upload keeps a sync worker on one request past gunicorn's
    timeout: the worker is killed and replaced, the client's connection is ended, and the
    request is logged as aborted and counted in ``mnist_http_requests_aborted_total``."""
    with gunicorn_server(fake_models, workers=1, args=["--timeout", "4"]) as server:
        (worker,) = server.worker_pids()
        body, content_type = _digit_upload()
        connection = _start_slow_upload(server.base_url, body, content_type)
        answer = b""
        with connection:
            # One more byte every half second: never silent for the body timeout (5 s), and
            # never done, until the worker is killed under it.
            connection.settimeout(0.5)
            deadline = time.monotonic() + 30
            for byte in body[len(body) // 2 : -1]:
                assert time.monotonic() < deadline, "the worker was not killed at its timeout"
                try:
                    connection.sendall(bytes([byte]))
                    chunk = connection.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
            else:
                pytest.fail("the whole body was sent and the worker never timed out")
        _wait_until(lambda: server.worker_pids() not in ([], [worker]), 30, "a new worker")
        assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]
        status, _, metrics = request("GET", server.base_url + "/metrics")
        assert status == 200
        assert b'mnist_http_requests_aborted_total{method="POST"} 1.0' in metrics
        aborted = [
            json.loads(line)
            for line in server.log().splitlines()
            if line.startswith("{") and '"aborted"' in line
        ]
        assert [(line["path"], line["status"]) for line in aborted] == [("/predict", None)]
        status, _ = get_json(server.base_url + "/health/ready")
        assert status == 200
