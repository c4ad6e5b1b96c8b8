"""One JSON line per request on ``serve.access``, and the X-Request-ID it carries."""

from __future__ import annotations

import base64
import datetime
import io
import json
import logging
import re
import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from serve.observability import metrics, requestlog
from serve.observability.requestlog import ACCESS_LOGGER, JsonFormatter
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
    """Keeps every line logged to it, formatted as the access log's own handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


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


def test_a_long_path_is_cut_so_the_line_stays_one_atomic_write(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    path = "/" + "%00" * 1300 + "/" + "\u00e9" * 2000
    result = client.simulate_get(path, headers={"User-Agent": "u" * 8000})
    assert result.status_code == 404
    line = only_line(access_lines)
    assert len(access_lines[0].encode()) < select.PIPE_BUF
    assert line["path"].endswith("...") and len(line["path"]) == requestlog.MAX_FIELD_CHARS


def test_the_default_handler_writes_each_line_in_one_call() -> None:
    logger = logging.getLogger("tests.requestlog.default")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    written: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            written.append(text)
            return len(text)

    logger.addHandler(logging.StreamHandler(Stream()))
    logger.handlers[0].setFormatter(JsonFormatter())
    logger.info("x", extra={"request": {"path": "/" + "p" * 5000, "status": 200}})
    assert len(written) == 1 and written[0].endswith("}\n")
    assert json.loads(written[0])["status"] == 200


def test_a_request_cut_short_at_the_timeout_is_logged_and_counted(
    client: falcon.testing.TestClient, access_lines: list[str]
) -> None:
    before = metrics.HTTP_REQUESTS_ABORTED.labels("POST")._value.get()
    request_handler = requestlog.RequestLog(logging.getLogger(ACCESS_LOGGER))
    req = falcon.testing.create_req(method="POST", path="/predict")
    request_handler.process_request(req, falcon.Response())  # ... and never answered.
    assert requestlog.log_aborted() == 1
    line = json.loads(access_lines[-1])
    assert (line["path"], line["status"], line["aborted"]) == ("/predict", None, True)
    assert line["request_id"] == req.context.request_id
    assert metrics.HTTP_REQUESTS_ABORTED.labels("POST")._value.get() == before + 1
    assert requestlog.log_aborted() == 0  # Nothing is logged twice.


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
