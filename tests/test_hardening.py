"""Hostile input through real gunicorn: every answer a 4xx with a JSON reason, and
afterwards the same worker processes still answer correctly (no crash, no restart)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from serve.api import uploads
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.images import png_declaring
from tests.servers import GunicornServer, encode_multipart, gunicorn_server, request

pytestmark = pytest.mark.slow

OCTET = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _digit() -> np.ndarray:
    """A white-on-black stroke digit ("1") in a 28x28 frame."""
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 12:16] = 255
    digit[5:8, 9:13] = 255
    return digit


def _lying_png(width: int, height: int, real_side: int = 28) -> bytes:
    """A grey PNG whose header declares ``width`` x ``height`` pixels but whose data holds
    only ``real_side`` x ``real_side``: a bomb when the header is large, else truncated."""
    rows = b"".join(b"\x00" + bytes(real_side) for _ in range(real_side))
    return png_declaring(width, height, zlib.compress(rows))


def _multipart(data: bytes, filename: str = "digit.png", field: str = "file") -> tuple[bytes, str]:
    return encode_multipart([(field, filename, data)])


def _v2_json(name: str, shape: list[int], data: object, datatype: str = "FP32") -> bytes:
    return json.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    ).encode()


def _v2_binary(name: str, array: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = array.astype(np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw, {"Content-Type": OCTET, HEADER_LENGTH: str(len(header))}


def _raw_exchange(base_url: str, head: bytes, body_start: bytes) -> tuple[int, bytes]:
    """Send a request head and only the start of its body, as a client streaming a huge
    upload would, and read whatever the server answers; returns (status, body)."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(head + body_start)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head_part, _, body = answer.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), body


@dataclasses.dataclass(frozen=True)
class Target:
    """The server under attack and the worker pids it started with."""

    server: GunicornServer
    started_workers: list[int]

    @property
    def base_url(self) -> str:
        """Where the server listens."""
        return self.server.base_url


@pytest.fixture(scope="module")
def server(fake_models: Path) -> Iterator[Target]:
    """gunicorn with 2 workers over the fake models, kept for every test of this module."""
    with gunicorn_server(fake_models, workers=2) as running:
        yield Target(running, sorted(running.worker_pids()))


def _upload_cases() -> list[tuple[str, bytes, str, int]]:
    """(case, body, content type, expected status) for POST /predict."""
    rng = np.random.default_rng(0)
    good = _png(_digit())
    white, black = np.full((28, 28), 255, np.uint8), np.zeros((28, 28), np.uint8)
    random_png = b"\x89PNG\r\n\x1a\n" + rng.bytes(8 * 1024 * 1024)
    cases = [
        ("empty file", *_multipart(b""), 400),
        ("truncated png", *_multipart(good[: len(good) // 2]), 400),
        ("random bytes named png", *_multipart(rng.bytes(4096), "digit.png"), 400),
        ("random bytes named jpg", *_multipart(rng.bytes(4096), "digit.jpg"), 400),
        ("html", *_multipart(b"<!DOCTYPE html><html><body>7</body></html>", "x.png"), 415),
        ("svg", *_multipart(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "x.svg"), 415),
        ("pdf", *_multipart(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "x.pdf"), 415),
        ("png bomb 20000x20000", *_multipart(_lying_png(20000, 20000)), 413),
        ("png header lies about size", *_multipart(_lying_png(3000, 3000)), 400),
        ("8 MB of noise", *_multipart(random_png), 400),
        ("1x1 image", *_multipart(_png(np.full((1, 1), 255, np.uint8))), 422),
        ("blank white", *_multipart(_png(white)), 422),
        ("blank black", *_multipart(_png(black)), 422),
        ("json file part", *_multipart(b'{"image": [0, 0, 0]}', "digit.png"), 400),
        ("too many files", *encode_multipart([("file", f"{i}.png", good) for i in range(65)]), 413),
    ]
    body, content_type = _multipart(good)
    boundary = content_type.split("boundary=")[1]
    cases += [
        ("raw empty body", b"", "image/png", 400),
        ("raw random bytes", rng.bytes(1000), "image/jpeg", 400),
        ("multipart without boundary", body, "multipart/form-data", 400),
        ("broken boundary", body.replace(boundary.encode(), b"x" * len(boundary), 1),
         content_type, 400),
        ("truncated multipart", body[: len(body) // 2], content_type, 400),
        ("json body", b'{"image": "seven.png"}', "application/json", 415),
        ("no content type", good, "", 415),
    ]  # fmt: skip
    return cases


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in _upload_cases()],
)
def test_hostile_upload_is_a_4xx_with_a_json_reason(
    server: Target, body: bytes, content_type: str, expected: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, answer = request("POST", server.base_url + "/predict", body, headers)
    assert status == expected, answer[:300]
    reason = json.loads(answer)
    assert reason["title"] and reason["description"]


def test_unknown_model_is_a_404_naming_the_known_ones(server: Target) -> None:
    body, content_type = _multipart(_png(_digit()))
    status, _, answer = request(
        "POST", server.base_url + "/predict?model=nope", body, {"Content-Type": content_type}
    )
    assert status == 404
    assert "cnn" in json.loads(answer)["description"]


def test_body_over_the_limit_is_a_413_before_it_is_read(server: Target) -> None:
    declared = 64 * 1024 * 1024
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    status, body = _raw_exchange(server.base_url, head, b"\x89PNG\r\n\x1a\n" + bytes(32768))
    assert status == 413
    assert json.loads(body)["description"]


def _v2_cases() -> list[tuple[str, bytes, dict[str, str], int]]:
    """(case, body, headers, expected status) for POST /v2/models/cnn/infer."""
    json_headers = {"Content-Type": "application/json"}
    zeros = [0.0] * 784
    nan_body, nan_headers = _v2_binary("image", np.full((1, 28, 28, 1), np.nan))
    inf_body, inf_headers = _v2_binary("image", np.full((1, 28, 28, 1), np.inf))
    return [
        ("wrong shape", _v2_json("image", [1, 27, 28, 1], [0.0] * 756), json_headers, 400),
        ("shape and data disagree", _v2_json("image", [2, 28, 28, 1], zeros), json_headers, 400),
        ("wrong datatype", _v2_json("image", [1, 28, 28, 1], zeros, "INT64"), json_headers, 400),
        ("unknown input", _v2_json("pixels", [1, 28, 28, 1], zeros), json_headers, 400),
        ("nan literal", _v2_json("image", [1, 28, 28, 1], zeros).replace(b"0.0", b"NaN", 1),
         json_headers, 400),
        ("huge number", _v2_json("image", [1, 28, 28, 1], zeros).replace(b"0.0", b"1e999", 1),
         json_headers, 400),
        ("out of range", _v2_json("image", [1, 28, 28, 1], [5.0] * 784), json_headers, 400),
        ("nan binary", nan_body, nan_headers, 400),
        ("infinity binary", inf_body, inf_headers, 400),
        ("ten million elements declared",
         _v2_json("image", [12756, 28, 28, 1], [0.0]), json_headers, 413),
        ("malformed json", b'{"inputs": [', json_headers, 400),
        ("empty body", b"", json_headers, 400),
        ("header length past the body", nan_body, {**nan_headers, HEADER_LENGTH: "99999999"},
         400),
        ("image bytes input with random bytes",
         _v2_json("image_bytes", [1], ["bm90IGFuIGltYWdl"], "BYTES"), json_headers, 400),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in _v2_cases()],
)
def test_hostile_tensor_is_a_4xx_with_a_json_error(
    server: Target, body: bytes, headers: dict[str, str], expected: int
) -> None:
    status, _, answer = request("POST", server.base_url + "/v2/models/cnn/infer", body, headers)
    assert status == expected, answer[:300]
    assert json.loads(answer)["error"]


def test_ten_million_binary_elements_are_a_413_before_they_are_read(
    server: Target,
) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [12756, 28, 28, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 12756 * 784 * 4},
                }
            ]
        }
    ).encode()
    head = (
        f"POST /v2/models/cnn/infer HTTP/1.1\r\nHost: test\r\nContent-Type: {OCTET}\r\n"
        f"{HEADER_LENGTH}: {len(header)}\r\nContent-Length: {len(header) + 12756 * 784 * 4}"
        "\r\n\r\n"
    ).encode()
    status, body = _raw_exchange(server.base_url, head, header + bytes(32768))
    assert status == 413
    assert json.loads(body)["error"]


def _exchange(
    base_url: str, data: bytes, half_close: bool = False, timeout: float = 15.0
) -> tuple[int, bytes, float]:
    """Send ``data`` raw (``half_close``: then shut the sending side, as a client that
    gives up mid-body), read one whole answer (by its Content-Length, without waiting for
    the connection to close); returns (status, body, seconds until the answer)."""
    address = urlsplit(base_url)
    started = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as connection:
        connection.sendall(data)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            assert chunk, f"connection closed without an answer: {answer!r}"
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            chunk = connection.recv(65536)
            assert chunk, "connection closed mid-answer"
            body += chunk
    return int(head.split(b" ", 2)[1]), body, time.monotonic() - started


def _chunked_head(path: str, content_type: str = "image/png") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


_PNG_START = _png(_digit())[:64]


def _body_cases() -> list[tuple[str, str, bytes, bool, str]]:
    """(case, path, bytes, half-close, word the reason names): broken bodies, each a 400."""
    cases = []
    for path, content_type in (("/predict", "image/png"), ("/v2/models/cnn/infer", OCTET)):
        head = _chunked_head(path, content_type)
        cases += [
            (f"{path} negative chunk size", path, head + b"-5\r\nhello\r\n0\r\n\r\n", False,
             "chunk size"),
            (f"{path} non-hex chunk size", path, head + b"zz\r\nhello\r\n0\r\n\r\n", False,
             "chunk size"),
            (f"{path} chunk without terminator", path, head + b"5\r\nhelloXX0\r\n\r\n", False,
             "terminator"),
            (f"{path} chunked body cut short", path, head + b"100\r\n" + _PNG_START, True,
             "last chunk"),
            (f"{path} body shorter than its Content-Length", path,
             f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
             f"Content-Length: 1000\r\n\r\n".encode() + _PNG_START, True, "Content-Length"),
        ]  # fmt: skip
    return cases


@pytest.mark.parametrize(
    ("path", "data", "half_close", "word"),
    [pytest.param(*case[1:], id=case[0]) for case in _body_cases()],
)
def test_broken_body_is_a_400_with_a_json_reason(
    server: Target, path: str, data: bytes, half_close: bool, word: str
) -> None:
    status, body, seconds = _exchange(server.base_url, data, half_close)
    assert status == 400, body
    reason = json.loads(body)
    assert word.lower() in (reason.get("description") or reason["error"]).lower(), reason
    assert seconds < 3


def test_body_that_stops_coming_is_a_408_within_the_body_timeout(server: Target) -> None:
    """A head announcing 1000 bytes, 64 of them sent, the socket left open: 408, and the
    worker is free again."""
    head = b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
    head += b"Content-Length: 1000\r\n\r\n"
    status, body, seconds = _exchange(server.base_url, head + _PNG_START)
    assert status == 408
    assert f"{uploads.BODY_TIMEOUT_SECONDS:g} s" in json.loads(body)["description"]
    assert uploads.BODY_TIMEOUT_SECONDS <= seconds < uploads.BODY_TIMEOUT_SECONDS + 3


@pytest.mark.parametrize("path", ["/predict", "/v2/models/cnn/infer"])
def test_images_over_the_request_pixel_budget_are_a_413_before_decoding(
    server: Target, path: str
) -> None:
    """Two headers declaring 6000x6000 each (72 million pixels, the budget is 50 million):
    refused from the headers, at once, naming the budget and its setting."""
    big = _lying_png(6000, 6000)
    if path == "/predict":
        body, content_type = encode_multipart([("file", f"{i}.png", big) for i in range(2)])
        headers = {"Content-Type": content_type}
    else:
        encoded = base64.b64encode(big).decode()
        body = _v2_json("image_bytes", [2], [encoded, encoded], "BYTES")
        headers = {"Content-Type": "application/json"}
    started = time.monotonic()
    status, _, answer = request("POST", server.base_url + path, body, headers)
    assert time.monotonic() - started < 2
    assert status == 413, answer
    reason = json.loads(answer)
    text = reason.get("description") or reason["error"]
    assert "72000000 pixels" in text and str(Settings().max_request_pixels) in text
    assert "MNIST_MAX_REQUEST_PIXELS" in text


def test_workers_survived_and_still_answer_correctly(server: Target, fake_models: Path) -> None:
    """Runs last in this module: the workers that took every hostile request above are
    the ones that started, and each request of a burst is answered right."""
    repository = ModelRepository.load(fake_models, "cnn", "cpu", 1)
    image = normalise.to_mnist(decode.decode(_png(_digit()), 40_000_000))
    expected = int(np.argmax(repository.get("cnn").predict(image[np.newaxis])[0]))
    body, content_type = _multipart(_png(_digit()))
    for _ in range(20):
        status, _, answer = request(
            "POST", server.base_url + "/predict", body, {"Content-Type": content_type}
        )
        assert status == 200
        assert json.loads(answer)["label"] == expected
    assert sorted(server.server.worker_pids()) == server.started_workers
    log = server.server.log()
    assert "Traceback" not in log
    assert "WORKER TIMEOUT" not in log
