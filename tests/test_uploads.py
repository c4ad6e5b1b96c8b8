"""Reading images out of /predict requests: content types, multipart, limits, bad requests."""

from __future__ import annotations

import io
from typing import Any

import falcon.testing
import pytest
from gunicorn.http import errors as gunicorn_errors
from PIL import Image

from serve import images
from serve.api import uploads
from serve.app import create_app
from serve.errors import BodyTimeout, InvalidBody, PayloadTooLarge
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.images import encoded
from tests.servers import encode_multipart


def digit_png() -> bytes:
    """A 28x28 PNG with a white vertical stroke on black."""
    image = Image.new("L", (28, 28), 0)
    image.paste(255, (12, 4, 16, 24))
    return encoded(image)


class WatchedStream(io.BytesIO):
    """A large request body that records whether anything read from it."""

    def __init__(self) -> None:
        super().__init__(bytes(100_000))
        self.was_read = False

    def read(self, size: int | None = -1) -> bytes:
        self.was_read = True
        return super().read(size)


def post(
    client: falcon.testing.TestClient, body: bytes, content_type: str | None, **kwargs: Any
) -> falcon.testing.Result:
    """POST ``body`` to /predict with ``content_type`` (no Content-Type header for None)."""
    headers = {"Content-Type": content_type} if content_type else {}
    return client.simulate_post("/predict", body=body, headers=headers, **kwargs)


def assert_error(result: falcon.testing.Result, status: int, *words: str) -> None:
    """The answer has ``status`` and a JSON body whose description names every word."""
    assert result.status_code == status, result.text
    assert set(result.json) == {"title", "description"}
    for word in words:
        assert word.lower() in result.json["description"].lower(), result.json


@pytest.fixture()
def small_client(settings: Settings, repository: ModelRepository) -> falcon.testing.TestClient:
    """An app with tight limits: 4 KiB bodies, 3 files per request."""
    settings.max_body_bytes = 4096
    settings.max_files = 3
    return falcon.testing.TestClient(create_app(settings, repository))


@pytest.mark.parametrize("field", ["file", "image"])
def test_multipart_part_named_file_or_image(client: falcon.testing.TestClient, field: str) -> None:
    body, content_type = encode_multipart([(field, "seven.png", digit_png())])
    assert post(client, body, content_type).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["image/png", "image/anything", "application/octet-stream", "IMAGE/PNG"]
)
def test_raw_body_content_types(client: falcon.testing.TestClient, content_type: str) -> None:
    assert post(client, digit_png(), content_type).status_code == 200


def test_other_form_fields_are_ignored(client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart(
        [("comment", "note.txt", b"hello"), ("file", "seven.png", digit_png())]
    )
    result = post(client, body, content_type)
    assert result.status_code == 200
    assert "label" in result.json


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
)
def test_unsupported_content_type_is_415(
    client: falcon.testing.TestClient, content_type: str | None
) -> None:
    result = post(client, b'{"image": "x"}', content_type)
    assert_error(result, 415, "multipart/form-data", "image/*")


def test_wrong_part_name_is_400(client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart([("picture", "seven.png", digit_png())])
    assert_error(post(client, body, content_type), 400, "no file", "'file' or 'image'")


def test_multipart_without_parts_is_400(client: falcon.testing.TestClient) -> None:
    assert_error(post(client, b"--abc--\r\n", "multipart/form-data; boundary=abc"), 400, "no file")


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream"])
def test_empty_raw_body_is_400(client: falcon.testing.TestClient, content_type: str) -> None:
    assert_error(post(client, b"", content_type), 400, "no file")


def test_empty_file_part_is_400(client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart([("file", "nothing.png", b"")])
    assert_error(post(client, body, content_type), 400, "nothing.png", "empty")


def test_multipart_without_boundary_is_400(client: falcon.testing.TestClient) -> None:
    body, _ = encode_multipart([("file", "seven.png", digit_png())])
    assert_error(post(client, body, "multipart/form-data"), 400, "boundary")


def test_multipart_with_broken_boundary_is_400(client: falcon.testing.TestClient) -> None:
    body, _ = encode_multipart([("file", "seven.png", digit_png())])
    result = post(client, body, "multipart/form-data; boundary=not-the-one-used")
    assert_error(result, 400, "multipart")


def test_truncated_multipart_is_400(client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart([("file", "seven.png", digit_png())])
    assert_error(post(client, body[:60], content_type), 400, "multipart")


def test_body_over_limit_is_413_before_reading(small_client: falcon.testing.TestClient) -> None:
    stream = WatchedStream()
    result = small_client.simulate_post(
        "/predict",
        headers={"Content-Type": "image/png", "Content-Length": "5000"},
        extras={"wsgi.input": stream},
    )
    assert_error(result, 413, "5000", "4096")
    assert not stream.was_read


def test_multipart_over_limit_is_413_before_reading(
    small_client: falcon.testing.TestClient,
) -> None:
    stream = WatchedStream()
    result = small_client.simulate_post(
        "/upload",
        headers={"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "99999999"},
        extras={"wsgi.input": stream},
    )
    assert_error(result, 413, "limit")
    assert not stream.was_read


def test_chunked_body_over_limit_is_413(small_client: falcon.testing.TestClient) -> None:
    """A body without Content-Length (chunked) is read at most to the limit, then refused."""
    stream = io.BytesIO(b"\x89PNG" + bytes(10_000))
    result = small_client.simulate_post(
        "/predict",
        headers={"Content-Type": "image/png"},
        extras={"wsgi.input": stream, "wsgi.input_terminated": True},
    )
    assert_error(result, 413, "4096")
    assert stream.tell() <= 4097


def test_chunked_body_within_limit_is_read(small_client: falcon.testing.TestClient) -> None:
    result = small_client.simulate_post(
        "/predict",
        headers={"Content-Type": "image/png"},
        extras={"wsgi.input": io.BytesIO(digit_png()), "wsgi.input_terminated": True},
    )
    assert result.status_code == 200, result.text


def test_too_many_files_is_413(small_client: falcon.testing.TestClient) -> None:
    tiny = digit_png()
    body, content_type = encode_multipart([("file", f"{n}.png", tiny) for n in range(4)])
    assert len(body) < 4096
    assert_error(post(small_client, body, content_type), 413, "too many files", "3")


def test_as_many_files_as_allowed_is_200(small_client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart([("file", f"{n}.png", digit_png()) for n in range(3)])
    result = post(small_client, body, content_type)
    assert result.status_code == 200, result.text
    assert len(result.json["predictions"]) == 3


def test_too_many_form_parts_is_413(small_client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart([("note", "", b"x")] * 25)
    assert len(body) < 4096
    assert_error(post(small_client, body, content_type), 413, "too many")


class FailingStream(io.BytesIO):
    """A chunked request body whose reading fails as gunicorn's reader would."""

    def __init__(self, error: Exception) -> None:
        super().__init__(b"")
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        raise self.error


def chunked_request(stream: io.BytesIO, content_length: int | None = None) -> falcon.Request:
    """A Falcon request reading ``stream`` as gunicorn hands over a body."""
    headers = {"Content-Type": "image/png"}
    if content_length is None:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(content_length)
    env = falcon.testing.create_environ("/predict", method="POST", headers=headers)
    env["wsgi.input"] = stream
    env["wsgi.input_terminated"] = True
    return falcon.Request(env)


@pytest.mark.parametrize(
    ("error", "expected", "word"),
    [
        (gunicorn_errors.InvalidChunkSize(b"-5"), InvalidBody, "chunk size"),
        (gunicorn_errors.ChunkMissingTerminator(b"XX"), InvalidBody, "terminator"),
        (gunicorn_errors.InvalidChunkExtension("bare CR"), InvalidBody, "chunk"),
        (gunicorn_errors.NoMoreData(b""), InvalidBody, "last chunk"),
        (ConnectionResetError(104, "reset"), InvalidBody, "connection broke"),
        (TimeoutError("timed out"), BodyTimeout, "did not arrive"),
    ],
)
def test_body_reading_errors_are_client_errors(
    error: Exception, expected: type[Exception], word: str
) -> None:
    with pytest.raises(expected, match=word):
        uploads.read_body(chunked_request(FailingStream(error)), 4096)


def test_body_shorter_than_its_content_length_is_400() -> None:
    with pytest.raises(InvalidBody, match="ended after 5 of the 1000 bytes"):
        uploads.read_body(chunked_request(io.BytesIO(b"hello"), content_length=1000), 4096)


def test_body_timeout_status_is_408() -> None:
    assert BodyTimeout("x").status == 408


def test_pixel_budget_counts_every_image_of_a_request(
    settings: Settings, repository: ModelRepository
) -> None:
    """Each 28x28 image is within every per-image limit; three together are over a budget
    of 2 images' pixels: 413 naming the budget and the setting, before any is decoded."""
    settings.max_request_pixels = 2 * 28 * 28
    client = falcon.testing.TestClient(create_app(settings, repository))
    two, content_type = encode_multipart([("file", f"{i}.png", digit_png()) for i in range(2)])
    assert post(client, two, content_type).status_code == 200
    three, content_type = encode_multipart([("file", f"{i}.png", digit_png()) for i in range(3)])
    assert_error(post(client, three, content_type), 413, "2352 pixels", "MNIST_MAX_REQUEST_PIXELS")


def test_pixel_budget_ignores_bytes_that_are_no_image() -> None:
    """Undecodable bytes count 0 pixels here; decoding them answers why (400)."""
    images.require_pixel_budget([b"not an image", digit_png()], 28 * 28)
    with pytest.raises(PayloadTooLarge):
        images.require_pixel_budget([digit_png(), digit_png()], 28 * 28)
