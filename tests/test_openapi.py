"""GET /openapi.json: a valid OpenAPI 3 document of exactly the routes the app serves, whose
schemas the app's real answers match."""

from __future__ import annotations

import base64
import json
from typing import Any

import falcon.inspect
import falcon.testing
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from serve.api import openapi
from serve.app import create_app
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from serve.v2.metadata import server_version
from tests.images import stroke_png
from tests.servers import encode_multipart

METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


@pytest.fixture()
def document(client: falcon.testing.TestClient) -> dict[str, Any]:
    result = client.simulate_get("/openapi.json")
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("application/json")
    return result.json


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_and_method_is_documented_and_nothing_else(
    client: falcon.testing.TestClient, document: dict[str, Any]
) -> None:
    served = {
        (route.path, method.method.lower())
        for route in falcon.inspect.inspect_routes(client.app)
        for method in route.methods
        if not method.internal
    }
    documented = {
        (path, method)
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }
    assert documented == served


#: The Open Inference Protocol's error objects, each ``{"error": "..."}``, by the operation.
V2_ERRORS = {
    "/v2/health/ready": "metadata_server_error_response",
    "/v2/models/{name}": "metadata_model_error_response",
    "/v2/models/{name}/ready": "metadata_model_error_response",
    "/v2/models/{name}/infer": "inference_error_response",
}


def test_errors_are_declared_with_their_json_shape(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or method == "head" or path == "/health/ready":
                    # Readiness answers its own document, 200 or 503.
                    continue
                schema = response["content"]["application/json"]["schema"]
                unversioned = path.replace("/versions/{version}", "")
                expected = V2_ERRORS[unversioned] if path.startswith("/v2") else "Error"
                assert schema == {"$ref": f"#/components/schemas/{expected}"}, (path, status)


@pytest.mark.parametrize("name", sorted(set(V2_ERRORS.values())))
def test_v2_errors_have_the_protocol_shape(document: dict[str, Any], name: str) -> None:
    schema = document["components"]["schemas"][name]
    assert schema["required"] == ["error"]
    assert schema["properties"]["error"]["type"] == "string"


@pytest.mark.parametrize(
    ("path", "method", "schema"),
    [
        ("/v2", "get", "metadata_server_response"),
        ("/v2/models/{name}", "get", "metadata_model_response"),
        ("/v2/models/{name}/versions/{version}", "get", "metadata_model_response"),
        ("/v2/models/{name}/infer", "post", "inference_response"),
        ("/v2/models/{name}/versions/{version}/infer", "post", "inference_response"),
    ],
)
def test_v2_answers_are_the_protocol_schemas(
    document: dict[str, Any], path: str, method: str, schema: str
) -> None:
    content = document["paths"][path][method]["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}


def test_v2_infer_takes_the_protocol_request(document: dict[str, Any]) -> None:
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        body = document["paths"][path]["post"]["requestBody"]["content"]
        assert body["application/json"]["schema"] == {
            "$ref": "#/components/schemas/inference_request"
        }
    schemas = document["components"]["schemas"]
    for name in ("inference_request", "request_input", "request_output", "tensor_data"):
        assert schemas[name]["title"] == name


def test_served_models_inputs_and_version_are_filled_in(
    document: dict[str, Any], repository: ModelRepository
) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ModelName"]["enum"] == ["cnn", "softmax"]
    assert schemas["ModelName"]["example"] == repository.default
    assert schemas["ModelVersion"]["enum"] == sorted({model.info.version for model in repository})
    assert schemas["InputName"]["enum"] == sorted(
        {model.info.input_name for model in repository} | {"image_bytes"}
    )
    assert document["info"]["version"] == server_version()
    for path in ("/predict", "/v2/models/{name}/infer"):
        operation = document["paths"][path]["post"]
        assert any(
            parameter.get("schema") == {"$ref": "#/components/schemas/ModelName"}
            or parameter.get("$ref") == "#/components/parameters/model_name"
            for parameter in operation["parameters"]
        ), path


def test_the_static_file_is_valid_and_names_no_model() -> None:
    static = json.loads(openapi.DOCUMENT_FILE.read_text(encoding="utf-8"))
    validate(static)
    for name in ("ModelName", "ModelVersion", "InputName"):
        assert "enum" not in static["components"]["schemas"][name]
    assert '"cnn"' not in openapi.DOCUMENT_FILE.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/predict", {"200", "400", "404", "413", "415", "422"}),
        ("/upload", {"200", "400", "404", "413", "415", "422"}),
        ("/v2/models/{name}/infer", {"200", "400", "404", "413", "415", "422", "503"}),
        (
            "/v2/models/{name}/versions/{version}/infer",
            {"200", "400", "404", "413", "415", "422", "503"},
        ),
    ],
)
def test_inference_routes_declare_every_status(
    document: dict[str, Any], path: str, statuses: set[str]
) -> None:
    assert set(document["paths"][path]["post"]["responses"]) == statuses


def assert_conforms(
    document: dict[str, Any], path: str, method: str, result: falcon.testing.Result
) -> None:
    """``result`` has a documented status and content type, its body matches the schema,
    and it carries the documented X-Request-ID header."""
    responses = document["paths"][path][method]["responses"]
    assert str(result.status_code) in responses, (path, result.status_code, result.text)
    response = responses[str(result.status_code)]
    assert "X-Request-ID" in response["headers"]
    assert result.headers.get("X-Request-ID")
    if "content" not in response:
        assert not result.content
        return
    media = result.headers["Content-Type"].split(";")[0].strip()
    assert media in response["content"], (path, media)
    if media == "application/json":
        schema = {**response["content"][media]["schema"], "components": document["components"]}
        OAS30Validator(schema).validate(result.json)


def _multipart(*files: bytes) -> dict[str, Any]:
    body, content_type = encode_multipart(
        [("file", f"{index}.png", data) for index, data in enumerate(files)]
    )
    return {"body": body, "headers": {"Content-Type": content_type}}


def _raw(body: bytes, content_type: str) -> dict[str, Any]:
    return {"body": body, "headers": {"Content-Type": content_type}}


def _infer(data: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    tensor = {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": data or []}
    return {"json": {"inputs": [{**tensor, **changes}]}}


PNG = stroke_png()
BLANK = stroke_png(stroke=False)
GOOD = base64.b64encode(PNG).decode()
CASES = [
    ("post", "/predict", "/predict", _multipart(PNG), 200),
    ("post", "/predict", "/predict?debug=1", _multipart(PNG), 200),
    ("post", "/upload", "/upload?model=softmax", _multipart(PNG, stroke_png(side=40)), 200),
    ("post", "/predict", "/predict", _raw(PNG, "image/png"), 200),
    ("post", "/predict", "/predict?model=nope", _multipart(PNG), 404),
    ("post", "/predict", "/predict", _multipart(b"garbage"), 400),
    ("post", "/predict", "/predict", _multipart(BLANK), 422),
    ("post", "/predict", "/predict", _raw(b"x", "text/plain"), 415),
    ("get", "/health/live", "/health/live", {}, 200),
    ("get", "/health/ready", "/health/ready", {}, 200),
    ("get", "/v2", "/v2", {}, 200),
    ("get", "/v2/health/live", "/v2/health/live", {}, 200),
    ("get", "/v2/health/ready", "/v2/health/ready", {}, 200),
    ("get", "/v2/models/{name}", "/v2/models/cnn", {}, 200),
    ("get", "/v2/models/{name}", "/v2/models/nope", {}, 404),
    ("get", "/v2/models/{name}/versions/{version}", "/v2/models/cnn/versions/1", {}, 200),
    ("get", "/v2/models/{name}/ready", "/v2/models/softmax/ready", {}, 200),
    ("post", "/v2/models/{name}/infer", "/v2/models/cnn/infer", _infer([GOOD]), 200),
    ("post", "/v2/models/{name}/infer", "/v2/models/cnn/infer", _infer([GOOD], shape=[2]), 400),
    ("post", "/v2/models/{name}/infer", "/v2/models/nope/infer", _infer([GOOD]), 404),
    (
        "post",
        "/v2/models/{name}/infer",
        "/v2/models/cnn/infer",
        _infer([base64.b64encode(BLANK).decode()]),
        422,
    ),
    ("get", "/metrics", "/metrics", {}, 200),
    ("get", "/openapi.json", "/openapi.json", {}, 200),
    ("get", "/", "/", {}, 200),
    ("head", "/", "/", {}, 200),
    ("get", "/static/{name}", "/static/app.js", {}, 200),
    ("get", "/static/{name}", "/static/nope.js", {}, 404),
]


@pytest.mark.parametrize(
    ("method", "template", "target", "options", "status"),
    CASES,
    ids=[f"{case[0]} {case[2]} {case[4]}" for case in CASES],
)
def test_real_answers_match_the_document(
    client: falcon.testing.TestClient,
    document: dict[str, Any],
    method: str,
    template: str,
    target: str,
    options: dict[str, Any],
    status: int,
) -> None:
    path, _, query = target.partition("?")
    result = client.simulate_request(method.upper(), path, query_string=query, **options)
    assert result.status_code == status, result.text
    assert_conforms(document, template, method, result)


@pytest.mark.parametrize(
    ("method", "template", "target", "options"),
    [
        ("get", "/health/ready", "/health/ready", {}),
        ("get", "/v2/health/ready", "/v2/health/ready", {}),
        ("get", "/v2/models/{name}/ready", "/v2/models/cnn/ready", {}),
        ("post", "/v2/models/{name}/infer", "/v2/models/cnn/infer", _infer([GOOD])),
    ],
)
def test_answers_while_the_models_load_match_the_document(
    settings: Settings,
    document: dict[str, Any],
    method: str,
    template: str,
    target: str,
    options: dict[str, Any],
) -> None:
    cold = ModelRepository.load(settings.model_dir, "cnn", "cpu", 1)
    client = falcon.testing.TestClient(create_app(settings, cold))
    result = client.simulate_request(method.upper(), target, **options)
    assert result.status_code == 503, result.text
    assert_conforms(document, template, method, result)
