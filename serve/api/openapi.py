"""``GET /openapi.json``: the OpenAPI 3.0 document of every route the app serves.

Built here in Python from small helpers, serialised once when the route is added.
"""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from serve.model.runtime import ModelRepository
from serve.v2.metadata import server_version

OPENAPI_VERSION = "3.0.3"
MEDIA_PROMETHEUS = "text/plain"
RAW_IMAGE_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/webp",
    "application/octet-stream",
)
#: A 28x28 PNG of a vertical stroke (a "1"), base64: the image examples of the document.
EXAMPLE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAG0lEQVR42mNgoD9gROH9RxVgwqdzVHJUcuAAAOxDAShSPMW8"
    "AAAAAElFTkSuQmCC"
)

Schema = dict[str, Any]

#: Why each error status is answered, for the response descriptions.
STATUS_REASONS = {
    304: "Not modified: the ETag sent in If-None-Match is current",
    400: "Invalid input: the body, a parameter or an image is malformed",
    404: "Not found: unknown model, model version or file",
    413: "Payload too large: body, image pixels, file count or tensor elements over the limit",
    415: "Unsupported media type: the body or an image is of a type not read here",
    422: "No digit found: the image decodes but holds no ink",
    503: "Not ready: the models are still loading",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _request_id_header() -> Schema:
    return {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}


def _response(description: str, content: Schema | None = None) -> Schema:
    response: Schema = {"description": description, "headers": _request_id_header()}
    if content is not None:
        response["content"] = content
    return response


def _errors(statuses: tuple[int, ...], v2: bool = False) -> dict[str, Schema]:
    """Error responses: ``{"error"}`` under /v2 (the protocol's shape), else
    ``{"title", "description"}``."""
    schema = _ref("V2Error") if v2 else _ref("Error")
    return {
        str(status): _response(STATUS_REASONS[status], _json_content(schema)) for status in statuses
    }


def _json_ok(description: str, schema_name: str) -> dict[str, Schema]:
    return {"200": _response(description, _json_content(_ref(schema_name)))}


def _empty_ok(description: str) -> dict[str, Schema]:
    """The v2 health answers: the status says it all, the text/plain body is empty."""
    empty = {"text/plain": {"schema": {"type": "string", "maxLength": 0}}}
    return {"200": _response(description, empty)}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Schema],
    parameters: list[Schema] | None = None,
    request_body: Schema | None = None,
) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [{"$ref": "#/components/parameters/X-Request-ID"}, *(parameters or [])],
        "responses": responses,
    }
    if request_body is not None:
        operation["requestBody"] = request_body
    return operation


def _path_parameter(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _model_schema(models: list[str]) -> Schema:
    """A served model's name: one of ``models``."""
    return {"type": "string", "enum": models, "example": models[0]}


def _object(properties: Schema, required: list[str] | None = None) -> Schema:
    """An object schema with ``properties``, of which ``required`` must be present."""
    schema: Schema = {"type": "object"}
    if required:
        schema["required"] = required
    schema["properties"] = properties
    return schema


def _parameters(properties: Schema | None = None) -> Schema:
    """A protocol ``parameters`` object: the ``properties`` named here, and any others."""
    schema: Schema = {"type": "object", "additionalProperties": True}
    if properties:
        schema["properties"] = properties
    return schema


def _schemas() -> dict[str, Schema]:
    """Every schema the paths refer to."""
    string = {"type": "string"}
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    binary_data_size = {"binary_data_size": {"type": "integer", "minimum": 0}}
    prediction_properties: Schema = {
        "classifier": {"type": "string", "example": "CNNClassifier"},
        "model": {"type": "string", "example": "cnn"},
        "label": {"type": "integer", "minimum": 0, "maximum": 9},
        "confidence": probability,
        "probabilities": {"type": "array", "items": probability, "minItems": 10, "maxItems": 10},
        "input_image": {
            "type": "string",
            "description": "With ?debug=1: the 28x28 the model saw, as a PNG data URL",
            "pattern": "^data:image/png;base64,",
        },
    }
    batch_item = _object(
        {"filename": {"type": "string", "nullable": True}, **prediction_properties},
        ["filename", *_prediction_required(prediction_properties)],
    )
    served_model = _object(
        {
            "name": string,
            "version": string,
            "provider": {"type": "string", "example": "CPUExecutionProvider"},
        },
        ["name", "version", "provider"],
    )
    tensor_metadata = _object(
        {
            "name": string,
            "datatype": {"type": "string", "example": "FP32"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
        },
        ["name", "datatype", "shape"],
    )
    inference_request = _object(
        {
            "id": string,
            "parameters": _parameters({"binary_data_output": {"type": "boolean"}}),
            "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")},
        },
        ["inputs"],
    )
    inference_request["example"] = {
        "id": "example-1",
        "inputs": [
            {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [EXAMPLE_PNG_BASE64]}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
    }
    return {
        "Error": _object({"title": string, "description": string}, ["title", "description"]),
        "V2Error": _object({"error": string}, ["error"]),
        "Prediction": _object(
            prediction_properties,
            ["classifier", "model", "label", "confidence", "probabilities"],
        ),
        "BatchPrediction": _object(
            {
                "classifier": string,
                "model": string,
                "predictions": {"type": "array", "items": batch_item},
            },
            ["classifier", "model", "predictions"],
        ),
        "Liveness": _object({"status": {"type": "string", "enum": ["live"]}}, ["status"]),
        "Readiness": _object(
            {
                "status": {"type": "string", "enum": ["ready", "loading"]},
                "models": {"type": "array", "items": served_model},
            },
            ["status", "models"],
        ),
        "ServerMetadata": _object(
            {"name": string, "version": string, "extensions": {"type": "array", "items": string}},
            ["name", "version", "extensions"],
        ),
        "TensorMetadata": tensor_metadata,
        "ModelMetadata": _object(
            {
                "name": string,
                "versions": {"type": "array", "items": string},
                "platform": {"type": "string", "example": "onnxruntime_onnx"},
                "inputs": {"type": "array", "items": _ref("TensorMetadata")},
                "outputs": {"type": "array", "items": _ref("TensorMetadata")},
                "parameters": {
                    "type": "object",
                    "description": "The model's own metadata (ONNX metadata_props)",
                    "additionalProperties": string,
                },
            },
            ["name", "platform", "inputs", "outputs"],
        ),
        "TensorData": {
            "type": "array",
            "description": "Tensor elements, flat or nested, in row-major order",
            "items": {},
        },
        "RequestInput": _object(
            {
                "name": {"type": "string", "example": "image_bytes"},
                "shape": shape,
                "datatype": {"type": "string", "example": "BYTES"},
                "parameters": _parameters(binary_data_size),
                "data": _ref("TensorData"),
            },
            ["name", "shape", "datatype"],
        ),
        "RequestOutput": _object(
            {
                "name": {"type": "string", "example": "probabilities"},
                "parameters": _parameters(
                    {
                        "binary_data": {"type": "boolean"},
                        "classification": {"type": "integer", "minimum": 0},
                    }
                ),
            },
            ["name"],
        ),
        "InferenceRequest": inference_request,
        "ResponseOutput": _object(
            {
                "name": string,
                "shape": shape,
                "datatype": {"type": "string", "enum": ["FP32", "BYTES"]},
                "parameters": _parameters(binary_data_size),
                "data": _ref("TensorData"),
            },
            ["name", "shape", "datatype"],
        ),
        "InferenceResponse": _object(
            {
                "model_name": string,
                "model_version": string,
                "id": string,
                "parameters": _parameters(),
                "outputs": {"type": "array", "items": _ref("ResponseOutput")},
            },
            ["model_name", "outputs"],
        ),
    }


def _prediction_required(properties: Schema) -> list[str]:
    """The keys of a single prediction that are always present (all but the debug image)."""
    return [key for key in properties if key != "input_image"]


def _upload_paths(models: list[str]) -> dict[str, Schema]:
    """``POST /predict`` and its original alias ``POST /upload``."""
    image_file = {"type": "string", "format": "binary"}
    files = {"oneOf": [image_file, {"type": "array", "items": image_file, "minItems": 1}]}
    content: Schema = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "description": "One or more parts named 'file' or 'image'",
                "properties": {"file": files, "image": files},
            }
        },
        **{media: {"schema": image_file} for media in RAW_IMAGE_TYPES},
    }
    parameters = [
        {
            "name": "model",
            "in": "query",
            "description": "Model to use; the default model when absent",
            "schema": _model_schema(models),
        },
        {
            "name": "debug",
            "in": "query",
            "description": "Also answer the 28x28 the model saw, as a PNG data URL",
            "schema": {"type": "boolean"},
        },
    ]
    responses = {
        "200": _response(
            "One image: its prediction; several: one prediction per file",
            _json_content({"oneOf": [_ref("Prediction"), _ref("BatchPrediction")]}),
        ),
        **_errors((400, 404, 413, 415, 422)),
    }
    body = {"required": True, "content": content}
    paths = {}
    for path, name in (("/predict", "predict"), ("/upload", "upload")):
        paths[path] = {
            "post": _operation(
                name,
                "Classify uploaded digit images (any size, format and colours)",
                "predict",
                responses,
                parameters,
                body,
            )
        }
    return paths


def _v2_model_paths(prefix: str, suffix: str, parameters: list[Schema]) -> dict[str, Schema]:
    """Model metadata, readiness and inference, under one model (and version) prefix."""
    binary_header = {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "description": "Binary tensor data extension: length of the JSON part of the body",
        "schema": {"type": "integer", "minimum": 0},
    }
    infer_body = {
        "required": True,
        "content": {
            **_json_content(_ref("InferenceRequest")),
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "JSON inference request followed by binary tensor data",
                }
            },
        },
    }
    infer_ok = _response(
        "Inference response; JSON followed by binary tensor data when outputs asked for it",
        {
            **_json_content(_ref("InferenceResponse")),
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    )
    infer_ok["headers"]["Inference-Header-Content-Length"] = {
        "description": "Length of the JSON part when binary tensor data follows",
        "schema": {"type": "integer"},
    }
    return {
        prefix: {
            "get": _operation(
                f"model_metadata{suffix}",
                "Model metadata: versions, platform, inputs and outputs",
                "v2",
                {**_json_ok("Model metadata", "ModelMetadata"), **_errors((404,), v2=True)},
                parameters,
            )
        },
        f"{prefix}/ready": {
            "get": _operation(
                f"model_ready{suffix}",
                "Whether the model is ready for inference",
                "v2",
                {**_empty_ok("The model is ready"), **_errors((404, 503), v2=True)},
                parameters,
            )
        },
        f"{prefix}/infer": {
            "post": _operation(
                f"model_infer{suffix}",
                "Run inference (JSON tensors, binary tensor data, classification, images)",
                "v2",
                {"200": infer_ok, **_errors((400, 404, 413, 415, 422, 503), v2=True)},
                [*parameters, binary_header],
                infer_body,
            )
        },
    }


def _v2_paths(models: list[str], versions: list[str]) -> dict[str, Schema]:
    """The Open Inference Protocol v2 (KServe / Triton REST) routes."""
    name = _path_parameter("name", "Model name", _model_schema(models))
    version = _path_parameter(
        "version", "Model version", {"type": "string", "enum": versions, "example": versions[0]}
    )
    return {
        "/v2": {
            "get": _operation(
                "server_metadata",
                "Server metadata: name, version, protocol extensions",
                "v2",
                _json_ok("Server metadata", "ServerMetadata"),
            )
        },
        "/v2/health/live": {
            "get": _operation("server_live", "The server is live", "v2", _empty_ok("Live"))
        },
        "/v2/health/ready": {
            "get": _operation(
                "server_ready",
                "Every model is loaded and ready",
                "v2",
                {**_empty_ok("Ready"), **_errors((503,), v2=True)},
            )
        },
        **_v2_model_paths("/v2/models/{name}", "", [name]),
        **_v2_model_paths("/v2/models/{name}/versions/{version}", "_version", [name, version]),
    }


def _service_paths() -> dict[str, Schema]:
    """Health, metrics, this document, and the page with its assets."""
    static_parameters = [
        _path_parameter("name", "File name", {"type": "string", "example": "app.js"}),
        {
            "name": "v",
            "in": "query",
            "description": "Content hash; the current one makes the file cacheable",
            "schema": {"type": "string"},
        },
    ]
    return {
        "/health/live": {
            "get": _operation("live", "The process is up", "health", _json_ok("Live", "Liveness"))
        },
        "/health/ready": {
            "get": _operation(
                "ready",
                "Every model is loaded and warmed, each with its provider and version",
                "health",
                {
                    "200": _response("Ready", _json_content(_ref("Readiness"))),
                    "503": _response("Still loading", _json_content(_ref("Readiness"))),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics (Triton's nv_inference_* names), summed over workers",
                "service",
                {
                    "200": _response(
                        "Prometheus text exposition format",
                        {MEDIA_PROMETHEUS: {"schema": {"type": "string"}}},
                    )
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This OpenAPI document",
                "service",
                {"200": _response("OpenAPI 3 document", _json_content({"type": "object"}))},
            )
        },
        "/": {
            "get": _operation(
                "page",
                "The demo page: draw or upload a digit and see the prediction",
                "page",
                {"200": _response("HTML page", {"text/html": {"schema": {"type": "string"}}})},
            ),
            "head": _operation(
                "page_head", "Headers of the demo page", "page", {"200": _response("HTML page")}
            ),
        },
        "/static/{name}": {
            "get": _operation(
                "static_file",
                "A script, style sheet or image of the page",
                "page",
                {
                    "200": _response(
                        "The file",
                        {
                            media: {"schema": {"type": "string"}}
                            for media in ("text/css", "text/javascript", "image/svg+xml")
                        }
                        | {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                    ),
                    "304": _response(STATUS_REASONS[304]),
                    **_errors((404,)),
                },
                static_parameters,
            ),
            "head": _operation(
                "static_file_head",
                "Headers of a file of the page",
                "page",
                {
                    "200": _response("Headers of the file"),
                    "304": _response(STATUS_REASONS[304]),
                    "404": _response(STATUS_REASONS[404]),
                },
                static_parameters,
            ),
        },
    }


def document(repository: ModelRepository) -> Schema:
    """The whole OpenAPI document, model names and versions those of ``repository``."""
    models = repository.names()
    versions = sorted({model.info.version for model in repository})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MNIST digit recognition (ONNX)",
            "version": server_version(),
            "description": (
                "Handwritten-digit recognition served from ONNX: image uploads, the Open "
                "Inference Protocol v2 (KServe/Triton REST), health, Prometheus metrics. Every "
                "response carries X-Request-ID (the client's, or a new one)."
            ),
        },
        "tags": [{"name": name} for name in ("predict", "v2", "health", "service", "page")],
        "paths": {
            **_upload_paths(models),
            **_v2_paths(models, versions),
            **_service_paths(),
        },
        "components": {
            "schemas": _schemas(),
            "parameters": {
                "X-Request-ID": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "description": "Request id to log and send back; generated when absent",
                    "schema": {"type": "string"},
                }
            },
            "headers": {
                "X-Request-ID": {
                    "description": "The request id (the client's, else 32 random hex digits)",
                    "schema": {"type": "string"},
                }
            },
        },
    }


class OpenApiDocument:
    """``GET /openapi.json``: the document of ``repository``'s models, serialised once."""

    def __init__(self, repository: ModelRepository) -> None:
        self._body = orjson.dumps(document(repository))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the document."""
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body
