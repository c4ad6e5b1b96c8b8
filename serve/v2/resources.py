"""Falcon resources of the Open Inference Protocol v2: HTTP translation only."""

from __future__ import annotations

import zlib

import falcon
import orjson

from serve.api import uploads
from serve.errors import InvalidInput, ModelNotReady, PayloadTooLarge, UnsupportedMediaType
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from serve.v2 import binary, inference, metadata, request

#: zlib ``wbits`` for each request Content-Encoding tritonclient may use.
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _send_json(resp: falcon.Response, document: object) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(document)


def _require_ready(repository: ModelRepository) -> None:
    if not repository.ready:
        raise ModelNotReady("the models are still loading")


def _send_empty(resp: falcon.Response) -> None:
    """The protocol's health answers: the status says it all, the body is empty (typed as
    text, since an empty body is no JSON document)."""
    resp.status = falcon.HTTP_200
    resp.content_type = falcon.MEDIA_TEXT


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The request body, in memory, at most ``limit`` bytes (``serve.api.uploads.read_body``:
    413 beyond, chunked bodies included); a gzip or deflate Content-Encoding is undone
    within the same limit."""
    body = uploads.read_body(req, limit)
    encoding = (req.get_header("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none"
        )
    decompressor = zlib.decompressobj(_ENCODINGS[encoding])
    try:
        inflated = decompressor.decompress(body, limit + 1)
    except zlib.error as ex:
        raise InvalidInput(f"the body is not valid {encoding} data: {ex}") from ex
    if len(inflated) > limit:
        raise PayloadTooLarge(f"the decompressed body is over the limit of {limit} bytes")
    return inflated


class ServerMetadata:
    """``GET /v2``: server name, version and extensions."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send_json(resp, metadata.server_metadata())


class ServerLive:
    """``GET /v2/health/live``: 200 with an empty body while the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send_empty(resp)


class ServerReady:
    """``GET /v2/health/ready``: 200 once every model is loaded and warmed, 503 before."""

    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _require_ready(self._repository)
        _send_empty(resp)


class ModelMetadata:
    """``GET /v2/models/{name}[/versions/{version}]``: the model's inputs and outputs."""

    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, name: str, version: str | None = None
    ) -> None:
        model = metadata.find_model(self._repository, name, version)
        _send_json(resp, metadata.model_metadata(model))


class ModelReady:
    """``GET /v2/models/{name}[/versions/{version}]/ready``: 200, 404 unknown, 503 loading."""

    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, name: str, version: str | None = None
    ) -> None:
        metadata.find_model(self._repository, name, version)
        _require_ready(self._repository)
        _send_empty(resp)


class ModelInfer:
    """``POST /v2/models/{name}[/versions/{version}]/infer``: JSON or binary tensors in,
    JSON (``application/json``) or JSON plus binary (``application/octet-stream``) out."""

    def __init__(self, settings: Settings, repository: ModelRepository) -> None:
        self._settings = settings
        self._repository = repository

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, name: str, version: str | None = None
    ) -> None:
        model = metadata.find_model(self._repository, name, version)
        req.context.model, req.context.model_version = model.info.name, model.info.version
        _require_ready(self._repository)
        body = read_body(req, self._settings.max_body_bytes)
        parsed = request.parse(body, req.get_header(binary.HEADER_LENGTH))
        result = inference.infer(model, parsed, self._settings)
        req.context.batch_size = result.batch_size
        resp.data = result.response.body
        if result.response.header_length is None:
            resp.content_type = falcon.MEDIA_JSON
        else:
            resp.content_type = "application/octet-stream"
            resp.set_header(binary.HEADER_LENGTH, str(result.response.header_length))
