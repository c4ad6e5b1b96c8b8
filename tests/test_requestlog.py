"""One JSON line per request on ``serve.access``, and the X-Request-ID it carries."""

from __future__ import annotations

import base64
import datetime
import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from serve.requestlog import (
    ACCESS_LOGGER,
    ATOMIC_WRITE_BYTES,
    StderrLines,
    whole_line_chunks,
    write_lines,
)
from tests.images import stroke_png
from tests.servers import encode_multipart, gunicorn_server, request

FIELDS = {
    "time",
    "request_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "model",
    "batch_size",
}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


class _Lines(logging.Handler):
    """Keeps every message logged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture()
def access_lines(client: falcon.testing.TestClient) -> Iterator[list[str]]:
    """The access log lines written while the test runs (after the app was built)."""
    handler = _Lines()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def only_line(lines: list[str]) -> dict[str, Any]:
    """The single JSON line logged, decoded."""
    assert len(lines) == 1, lines
    line = json.loads(lines[0])
    assert set(line) == FIELDS
    return line


def test_one_json_line_per_request_with_a_generated_id(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    result = client.simulate_get("/health/live")
    line = only_line(access_lines)
    assert GENERATED_ID.fullmatch(result.headers["X-Request-ID"])
    assert line["request_id"] == result.headers["X-Request-ID"]
    assert line["method"] == "GET"
    assert line["route"] == "/health/live"
    assert line["path"] == "/health/live"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["model"] is None and line["batch_size"] is None
    logged_at = datetime.datetime.fromisoformat(line["time"])
    assert abs(datetime.datetime.now(datetime.UTC) - logged_at) < datetime.timedelta(minutes=1)


def test_every_request_gets_its_own_id(client: falcon.testing.TestClient) -> None:
    ids = {client.simulate_get("/health/live").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


def test_client_request_id_is_kept_and_sent_back(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    result = client.simulate_get("/v2", headers={"X-Request-ID": "trace-42/abc"})
    assert result.headers["X-Request-ID"] == "trace-42/abc"
    assert only_line(access_lines)["request_id"] == "trace-42/abc"


@pytest.mark.parametrize("sent", ["x" * 129, "has space", "tab\there", ""])
def test_unusable_request_id_is_replaced(
    client: falcon.testing.TestClient, access_lines: list[str], sent: str
) -> None:
    result = client.simulate_get("/health/live", headers={"X-Request-ID": sent})
    assert GENERATED_ID.fullmatch(result.headers["X-Request-ID"])
    assert only_line(access_lines)["request_id"] == result.headers["X-Request-ID"]


def test_predict_logs_model_and_batch_size(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    body, content_type = encode_multipart(
        [("file", "a.png", stroke_png()), ("file", "b.png", stroke_png(40))]
    )
    result = client.simulate_post(
        "/upload?model=softmax", body=body, headers={"Content-Type": content_type}
    )
    assert result.status_code == 200, result.text
    line = only_line(access_lines)
    assert (line["method"], line["route"], line["status"]) == ("POST", "/upload", 200)
    assert (line["model"], line["batch_size"]) == ("softmax", 2)


def test_v2_infer_logs_model_and_batch_size(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    image = base64.b64encode(stroke_png()).decode()
    document = {
        "inputs": [{"name": "image_bytes", "shape": [3], "datatype": "BYTES", "data": [image] * 3}]
    }
    result = client.simulate_post("/v2/models/cnn/infer", json=document)
    assert result.status_code == 200, result.text
    line = only_line(access_lines)
    assert line["route"] == "/v2/models/{name}/infer"
    assert line["path"] == "/v2/models/cnn/infer"
    assert (line["model"], line["batch_size"]) == ("cnn", 3)


def test_errors_are_logged_with_their_status_and_id(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    result = client.simulate_post(
        "/predict", body=b"not an image", headers={"Content-Type": "image/png"}
    )
    assert result.status_code == 400
    assert GENERATED_ID.fullmatch(result.headers["X-Request-ID"])
    missing = client.simulate_get("/no/such/page", headers={"X-Request-ID": "lost-1"})
    assert missing.status_code == 404
    assert missing.headers["X-Request-ID"] == "lost-1"
    bad, unmatched = (json.loads(line) for line in access_lines)
    assert (bad["status"], bad["model"]) == (400, "cnn")
    assert (unmatched["status"], unmatched["route"], unmatched["request_id"]) == (
        404,
        None,
        "lost-1",
    )


@pytest.fixture()
def plain_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger set up as configure_access_logger leaves the access logger, and what its
    handler writes (a StringIO in place of stderr)."""
    logger = logging.getLogger("tests.requestlog.plain")
    logger.setLevel(logging.INFO)
    handler = StderrLines()
    written = io.StringIO()
    handler.setStream(written)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, written
    finally:
        logger.handlers.clear()
        logger.filters.clear()


def test_the_default_handler_gets_the_same_line_logging_writes(
    plain_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, written = plain_logger
    write_lines(logger, ['{"a":1}'])  # Straight to the handler's stream.
    logger.info('{"a":2}')  # Through logging, for comparison.
    write_lines(logger, ['{"a":3}', '{"a":4}'])
    assert written.getvalue() == '{"a":1}\n{"a":2}\n{"a":3}\n{"a":4}\n'


def test_a_filter_or_a_level_on_the_access_logger_is_honoured(
    plain_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, written = plain_logger
    logger.addFilter(lambda record: "drop" not in record.getMessage())
    write_lines(logger, ["drop me", "keep me"])
    logger.filters.clear()
    logger.handlers[0].setLevel(logging.WARNING)
    write_lines(logger, ["below the handler's level"])
    assert written.getvalue() == "keep me\n"


@pytest.mark.slow
def test_gunicorn_prints_each_line_once(fake_models: Path) -> None:
    with gunicorn_server(fake_models, workers=2) as server:
        for index in range(6):
            status, headers, _ = request(
                "GET", server.base_url + "/health/live", headers={"X-Request-ID": f"once-{index}"}
            )
            assert status == 200
            assert {name.lower(): value for name, value in headers.items()}[
                "x-request-id"
            ] == f"once-{index}"
        server.stop()
        output = server.log()
    for index in range(6):
        lines = [line for line in output.splitlines() if f'"request_id":"once-{index}"' in line]
        assert len(lines) == 1, output
        assert json.loads(lines[0])["route"] == "/health/live"


def test_lines_are_written_in_chunks_of_whole_lines_within_the_atomic_size() -> None:
    lines = [f'{{"n":{index},"pad":"{"x" * (index % 300)}"}}' for index in range(200)]
    lines.insert(50, "y" * (ATOMIC_WRITE_BYTES + 10))  # Longer than one atomic write.
    lines.insert(80, "é" * 300)  # 600 bytes in UTF-8.
    chunks = list(whole_line_chunks(lines, "\n", ATOMIC_WRITE_BYTES))
    assert "".join(chunks) == "".join(line + "\n" for line in lines)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.endswith("\n")
        assert len(chunk.encode()) <= ATOMIC_WRITE_BYTES or chunk.count("\n") == 1


class _Writes(io.StringIO):
    """A stream that records what each flush sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self._flushed = 0

    def flush(self) -> None:
        value = self.getvalue()
        self.sent.append(value[self._flushed :])
        self._flushed = len(value)


def test_the_default_handler_sends_each_chunk_on_its_own() -> None:
    handler = StderrLines()
    stream = _Writes()
    handler.setStream(stream)
    lines = ["z" * 100 for _ in range(100)]
    handler.write_lines(lines)
    assert stream.sent == list(whole_line_chunks(lines, "\n", ATOMIC_WRITE_BYTES))


def _write_batches(write_end: int, name: str) -> None:
    """In a forked child: write 40 batches of 50 JSON lines (about 12 kB) to the pipe."""
    handler = StderrLines()
    handler.setStream(os.fdopen(write_end, "w", buffering=1))
    for batch in range(40):
        handler.write_lines(
            [
                json.dumps({"worker": name, "n": batch * 50 + index, "pad": "p" * 200})
                for index in range(50)
            ]
        )
    os._exit(0)


def test_two_workers_writing_batches_to_one_pipe_never_break_a_line() -> None:
    read_end, write_end = os.pipe()
    children = []
    for name in ("a", "b"):
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _write_batches(write_end, name)
        children.append(pid)
    os.close(write_end)
    pieces = []
    while piece := os.read(read_end, 4096):  # Slowly: the writers find the pipe full.
        pieces.append(piece)
        time.sleep(0.0002)
    os.close(read_end)
    received = b"".join(pieces).decode().splitlines()
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    parsed = [json.loads(line) for line in received]
    for name in ("a", "b"):
        assert [line["n"] for line in parsed if line["worker"] == name] == list(range(2000))
