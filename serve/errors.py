"""Domain errors, each carrying its HTTP status; one handler turns them into JSON."""

from __future__ import annotations

from typing import Any

import falcon


class ServiceError(Exception):
    """Base of every error a client can cause; ``status`` is the HTTP code it maps to."""

    status = 400
    title = "Bad request"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidInput(ServiceError):
    """The request is malformed: missing part, bad JSON, wrong tensor shape or datatype."""

    status = 400
    title = "Invalid input"


class InvalidImage(ServiceError):
    """The bytes are not a readable image (empty, truncated, random bytes)."""

    status = 400
    title = "Invalid image"


class UnsupportedMediaType(ServiceError):
    """The body or part is of a type we do not read (SVG, PDF, HTML, ...)."""

    status = 415
    title = "Unsupported media type"


class InvalidBody(InvalidInput):
    """The body could not be read whole: malformed chunked framing, or a body that ends
    before its Content-Length."""


class BodyTimeout(ServiceError):
    """The client stopped sending the body it announced (408)."""

    status = 408
    title = "Request timeout"


class PayloadTooLarge(ServiceError):
    """The body, an image's or a request's pixel count, or the number of files is over
    its limit."""

    status = 413
    title = "Payload too large"


class BlankImage(ServiceError):
    """The image decodes but holds no ink to classify."""

    status = 422
    title = "No digit found"


class ModelNotFound(ServiceError):
    """The requested model (or model version) is not served here."""

    status = 404
    title = "Model not found"


class ModelNotReady(ServiceError):
    """The model exists but its session is not loaded and warmed yet."""

    status = 503
    title = "Model not ready"


def _error_body(req: falcon.Request, title: str, description: str) -> dict[str, str]:
    """The Open Inference Protocol wants ``{"error": ...}``; everything else gets
    ``{"title", "description"}``, Falcon's own shape."""
    if req.path.startswith("/v2"):
        return {"error": description or title}
    return {"title": title, "description": description or title}


def _handle_service_error(
    req: falcon.Request, resp: falcon.Response, ex: ServiceError, params: dict[str, Any]
) -> None:
    resp.status = falcon.code_to_http_status(ex.status)
    resp.media = _error_body(req, ex.title, ex.description)


def _serialize_http_error(
    req: falcon.Request, resp: falcon.Response, exception: falcon.HTTPError
) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.media = _error_body(req, exception.title or "", exception.description or "")


def install(app: falcon.App) -> None:
    """Map every ServiceError to its status with a JSON body, and give Falcon's own
    errors (404 route, 405, 413 ...) the same shape."""
    app.add_error_handler(ServiceError, _handle_service_error)
    app.set_error_serializer(_serialize_http_error)
