"""Open Inference Protocol v2 routes through falcon.testing: every route and every error."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import struct
from pathlib import Path
from typing import Any

import falcon.testing
import numpy as np
import pytest
from hypothesis import HealthCheck, given, strategies
from hypothesis import settings as hypothesis_settings
from PIL import Image, ImageDraw

from serve.app import create_app
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.fakes import write_fake_model
from tests.images import encoded

HEADER_LENGTH = "Inference-Header-Content-Length"
INFER = "/v2/models/cnn/infer"


def pixel_batch(batch: int, seed: int = 0) -> np.ndarray:
    """Random float32 pixels in [0, 1], ``[batch, 28, 28]``."""
    return np.random.default_rng(seed).random((batch, 28, 28), dtype=np.float32)


def fp32_input(array: np.ndarray, shape: list[int] | None = None) -> dict[str, Any]:
    """A JSON FP32 ``image`` input holding ``array`` (flat data)."""
    return {
        "name": "image",
        "datatype": "FP32",
        "shape": shape or [len(array), 28, 28, 1],
        "data": array.ravel().tolist(),
    }


def post_json(client: falcon.testing.TestClient, document: Any, path: str = INFER, **kwargs: Any):
    """POST ``document`` as JSON with no Content-Type header, as tritonclient does."""
    return client.simulate_post(path, body=json.dumps(document), **kwargs)


def post_classification(
    client: falcon.testing.TestClient, images: np.ndarray, count: Any
) -> falcon.testing.Result:
    """Ask for the top ``count`` classes of ``images`` (classification extension)."""
    output = {"name": "probabilities", "parameters": {"classification": count}}
    return post_json(client, {"inputs": [fp32_input(images)], "outputs": [output]})


def binary_request(document: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body (JSON header + chunks) and its headers."""
    header = json.dumps(document).encode()
    return header + b"".join(chunks), {
        HEADER_LENGTH: str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def split_response(result: falcon.testing.Result) -> tuple[dict[str, Any], bytes]:
    """Split a binary-extension response into its JSON header and its binary data."""
    length = int(result.headers[HEADER_LENGTH.lower()])
    return json.loads(result.content[:length]), result.content[length:]


def bytes_elements(data: bytes) -> list[bytes]:
    """Decode Triton's BYTES serialisation (4-byte little-endian length, then the bytes)."""
    elements, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        elements.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return elements


def digit_png(thickness: int = 3, side: int = 28) -> bytes:
    """A white stroke on black, PNG-encoded: something with ink to classify."""
    image = Image.new("L", (side, side), 0)
    ImageDraw.Draw(image).line(
        [(side // 2, 4), (side // 2 - 3, side - 5)], fill=255, width=thickness
    )
    return encoded(image)


def expected_for_images(repository: ModelRepository, settings: Settings, images: list[bytes]):
    """What /predict's preprocessing and the cnn give for encoded ``images``."""
    arrays = [normalise.to_mnist(decode.decode(data, settings.max_image_pixels)) for data in images]
    return repository.get("cnn").predict(np.stack(arrays))


def client_with(settings: Settings, repository: ModelRepository, **changes: Any):
    """A test client over the same models with some settings changed."""
    return falcon.testing.TestClient(
        create_app(dataclasses.replace(settings, **changes), repository)
    )


# Health and metadata.


def test_server_metadata_lists_extensions(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/v2")
    assert result.status_code == 200
    assert result.json["name"] == "mnist-onnx-serve"
    assert isinstance(result.json["version"], str)
    assert {"binary_tensor_data", "classification"} <= set(result.json["extensions"])


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_server_health_is_200_with_empty_body(client: falcon.testing.TestClient, path: str) -> None:
    result = client.simulate_get(path)
    assert result.status_code == 200
    assert result.content == b""
    assert result.headers["content-type"].startswith("text/plain")


def test_server_and_models_not_ready_before_warm_up(settings: Settings) -> None:
    cold = ModelRepository.load(settings.model_dir, "cnn", "cpu", 1)
    client = falcon.testing.TestClient(create_app(settings, cold))
    assert client.simulate_get("/v2/health/live").status_code == 200
    for path in ("/v2/health/ready", "/v2/models/cnn/ready", "/v2/models/cnn/versions/1/ready"):
        result = client.simulate_get(path)
        assert result.status_code == 503
        assert "loading" in result.json["error"]
    assert post_json(client, {"inputs": [fp32_input(pixel_batch(1))]}).status_code == 503
    cold.warm_up()
    assert client.simulate_get("/v2/health/ready").status_code == 200
    assert client.simulate_get("/v2/models/cnn/ready").status_code == 200


@pytest.mark.parametrize(
    ("name", "input_shape"), [("cnn", [-1, 28, 28, 1]), ("softmax", [-1, 784])]
)
@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_model_metadata(
    client: falcon.testing.TestClient, name: str, input_shape: list[int], suffix: str
) -> None:
    result = client.simulate_get(f"/v2/models/{name}{suffix}")
    assert result.status_code == 200
    body = result.json
    assert body["name"] == name
    assert body["versions"] == ["1"]
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": input_shape},
        {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
    ]
    assert body["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert body["parameters"]["test_accuracy"] == "0.1"


@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_model_ready(client: falcon.testing.TestClient, suffix: str) -> None:
    result = client.simulate_get(f"/v2/models/softmax{suffix}/ready")
    assert result.status_code == 200
    assert result.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/cnn/versions/2",
        "/v2/models/cnn/versions/2/ready",
    ],
)
def test_unknown_model_or_version_is_404(client: falcon.testing.TestClient, path: str) -> None:
    result = client.simulate_get(path)
    assert result.status_code == 404
    assert set(result.json) == {"error"}
    assert "nope" in result.json["error"] or "version '2'" in result.json["error"]


@pytest.mark.parametrize("path", ["/v2/models/nope/infer", "/v2/models/cnn/versions/7/infer"])
def test_infer_on_unknown_model_or_version_is_404(
    client: falcon.testing.TestClient, path: str
) -> None:
    result = post_json(client, {"inputs": [fp32_input(pixel_batch(1))]}, path)
    assert result.status_code == 404
    assert "error" in result.json


def test_unknown_route_and_method_answer_protocol_errors(client: falcon.testing.TestClient) -> None:
    assert set(client.simulate_get("/v2/nothing/here").json) == {"error"}
    result = client.simulate_get(INFER)
    assert result.status_code == 405
    assert set(result.json) == {"error"}


# Inference with JSON tensors.


@pytest.mark.parametrize("model_name", ["cnn", "softmax"])
def test_infer_json_matches_the_model(
    client: falcon.testing.TestClient, repository: ModelRepository, model_name: str
) -> None:
    images = pixel_batch(3)
    model = repository.get(model_name)
    shape = [3, *model.info.input_shape[1:]]
    result = post_json(
        client, {"inputs": [fp32_input(images, shape)]}, f"/v2/models/{model_name}/infer"
    )
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert body["model_name"] == model_name
    assert body["model_version"] == "1"
    assert "id" not in body
    (output,) = body["outputs"]
    assert output["name"] == "probabilities"
    assert output["datatype"] == "FP32"
    assert output["shape"] == [3, 10]
    np.testing.assert_allclose(
        np.array(output["data"]).reshape(3, 10), model.predict(images), rtol=1e-6
    )


def test_infer_accepts_nested_data_and_equivalent_layouts(
    client: falcon.testing.TestClient, repository: ModelRepository
) -> None:
    images = pixel_batch(2)
    expected = repository.get("cnn").predict(images)
    variants = [
        {
            "name": "image",
            "datatype": "FP32",
            "shape": [2, 28, 28, 1],
            "data": images[..., None].tolist(),
        },
        {
            "name": "image",
            "datatype": "FP32",
            "shape": [2, 784],
            "data": images.reshape(2, 784).tolist(),
        },
        {"name": "image", "datatype": "FP32", "shape": [2, 28, 28], "data": images.tolist()},
        {
            "name": "image",
            "datatype": "FP32",
            "shape": [2, 1, 28, 28],
            "data": images.ravel().tolist(),
        },
    ]
    for tensor in variants:
        result = post_json(client, {"inputs": [tensor]})
        assert result.status_code == 200, result.text
        data = np.array(result.json["outputs"][0]["data"]).reshape(2, 10)
        np.testing.assert_allclose(data, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8"]
)
def test_infer_content_types(client: falcon.testing.TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    result = post_json(client, {"inputs": [fp32_input(pixel_batch(1))]}, headers=headers)
    assert result.status_code == 200


def test_infer_echoes_id_and_parameters(client: falcon.testing.TestClient) -> None:
    parameters = {"trace": "abc", "priority_hint": 3, "flag": True}
    result = post_json(
        client, {"id": "req-42", "parameters": parameters, "inputs": [fp32_input(pixel_batch(1))]}
    )
    assert result.status_code == 200
    assert result.json["id"] == "req-42"
    assert result.json["parameters"] == parameters


def test_infer_omits_model_version_when_the_model_has_none(
    tmp_path: Path, settings: Settings
) -> None:
    write_fake_model(tmp_path / "cnn.onnx", "cnn", "nhwc", version="")
    repository = ModelRepository.load(tmp_path, "cnn", "cpu", 1)
    repository.warm_up()
    client = falcon.testing.TestClient(
        create_app(dataclasses.replace(settings, model_dir=tmp_path), repository)
    )
    result = post_json(client, {"inputs": [fp32_input(pixel_batch(1))]})
    assert result.status_code == 200
    assert "model_version" not in result.json


def test_infer_with_version_in_path(client: falcon.testing.TestClient) -> None:
    result = post_json(
        client, {"inputs": [fp32_input(pixel_batch(1))]}, "/v2/models/cnn/versions/1/infer"
    )
    assert result.status_code == 200
    assert result.json["model_version"] == "1"


def test_infer_selects_named_output(client: falcon.testing.TestClient) -> None:
    result = post_json(
        client, {"inputs": [fp32_input(pixel_batch(1))], "outputs": [{"name": "probabilities"}]}
    )
    assert result.status_code == 200
    assert [output["name"] for output in result.json["outputs"]] == ["probabilities"]


def test_infer_empty_outputs_list_answers_every_output(client: falcon.testing.TestClient) -> None:
    result = post_json(client, {"inputs": [fp32_input(pixel_batch(1))], "outputs": []})
    assert result.status_code == 200
    assert [output["name"] for output in result.json["outputs"]] == ["probabilities"]


def test_infer_unknown_output_is_400(client: falcon.testing.TestClient) -> None:
    result = post_json(
        client, {"inputs": [fp32_input(pixel_batch(1))], "outputs": [{"name": "logits"}]}
    )
    assert result.status_code == 400
    assert "logits" in result.json["error"]


# Classification extension.


def test_classification_returns_top_k_strings(
    client: falcon.testing.TestClient, repository: ModelRepository
) -> None:
    images = pixel_batch(2)
    probabilities = repository.get("cnn").predict(images)
    result = post_classification(client, images, 3)
    assert result.status_code == 200
    (output,) = result.json["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [2, 3]
    rows = np.array(output["data"]).reshape(2, 3)
    for row, expected in zip(rows, probabilities, strict=True):
        values = [float(item.split(":")[0]) for item in row]
        indices = [int(item.split(":")[1]) for item in row]
        assert indices == list(np.argsort(-expected, kind="stable")[:3])
        assert values == sorted(values, reverse=True)
        np.testing.assert_allclose(values, expected[indices], rtol=1e-5)


def test_classification_count_beyond_classes_gives_every_class(
    client: falcon.testing.TestClient,
) -> None:
    result = post_classification(client, pixel_batch(1), 50)
    assert result.json["outputs"][0]["shape"] == [1, 10]


@pytest.mark.parametrize("count", [-1, 1.5, "3", True])
def test_bad_classification_count_is_400(client: falcon.testing.TestClient, count: Any) -> None:
    result = post_classification(client, pixel_batch(1), count)
    assert result.status_code == 400
    assert "classification" in result.json["error"]


# Binary tensor data extension.


def test_binary_input_and_output(
    client: falcon.testing.TestClient, repository: ModelRepository
) -> None:
    images = pixel_batch(4)
    raw = images.astype("<f4").tobytes()
    body, headers = binary_request(
        {
            "id": "bin",
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [4, 28, 28, 1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        },
        [raw],
    )
    result = client.simulate_post(INFER, body=body, headers=headers)
    assert result.status_code == 200
    assert result.headers["content-type"] == "application/octet-stream"
    header, data = split_response(result)
    assert header["id"] == "bin"
    (output,) = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 4 * 10 * 4}
    assert "data" not in output
    probabilities = np.frombuffer(data, dtype="<f4").reshape(output["shape"])
    np.testing.assert_allclose(probabilities, repository.get("cnn").predict(images), rtol=1e-6)


def test_binary_data_output_applies_to_all_outputs_unless_overridden(
    client: falcon.testing.TestClient,
) -> None:
    tensor = fp32_input(pixel_batch(1))
    result = post_json(client, {"inputs": [tensor], "parameters": {"binary_data_output": True}})
    header, data = split_response(result)
    assert len(data) == header["outputs"][0]["parameters"]["binary_data_size"] == 40
    result = post_json(
        client,
        {
            "inputs": [tensor],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
        },
    )
    assert result.headers["content-type"].startswith("application/json")
    assert HEADER_LENGTH.lower() not in result.headers
    assert len(result.json["outputs"][0]["data"]) == 10


def test_binary_classification_output(client: falcon.testing.TestClient) -> None:
    result = post_json(
        client,
        {
            "inputs": [fp32_input(pixel_batch(2))],
            "outputs": [
                {"name": "probabilities", "parameters": {"classification": 2, "binary_data": True}}
            ],
        },
    )
    header, data = split_response(result)
    assert header["outputs"][0]["shape"] == [2, 2]
    assert header["outputs"][0]["datatype"] == "BYTES"
    elements = bytes_elements(data)
    assert len(elements) == 4
    assert all(b":" in element for element in elements)


def test_gzip_request_body_is_accepted(client: falcon.testing.TestClient) -> None:
    body = gzip.compress(json.dumps({"inputs": [fp32_input(pixel_batch(1))]}).encode())
    result = client.simulate_post(INFER, body=body, headers={"Content-Encoding": "gzip"})
    assert result.status_code == 200


# Encoded images through the BYTES input.


def test_image_bytes_binary_matches_predict_pipeline(
    client: falcon.testing.TestClient, repository: ModelRepository, settings: Settings
) -> None:
    images = [digit_png(3), digit_png(5, side=64)]
    raw = b"".join(struct.pack("<I", len(image)) + image for image in images)
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "datatype": "BYTES",
                    "shape": [2, 1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        },
        [raw],
    )
    result = client.simulate_post(INFER, body=body, headers=headers)
    assert result.status_code == 200, result.text
    header, data = split_response(result)
    probabilities = np.frombuffer(data, dtype="<f4").reshape(header["outputs"][0]["shape"])
    np.testing.assert_allclose(
        probabilities, expected_for_images(repository, settings, images), rtol=1e-6
    )


def test_image_bytes_json_base64(
    client: falcon.testing.TestClient, repository: ModelRepository, settings: Settings
) -> None:
    image = digit_png()
    result = post_json(
        client,
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(image).decode()],
                }
            ]
        },
    )
    assert result.status_code == 200, result.text
    probabilities = np.array(result.json["outputs"][0]["data"]).reshape(1, 10)
    np.testing.assert_allclose(
        probabilities, expected_for_images(repository, settings, [image]), rtol=1e-6
    )


def image_input(data: Any, shape: list[int], datatype: str = "BYTES") -> dict[str, Any]:
    return {"inputs": [{"name": "image_bytes", "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize(
    ("document", "status", "fragment"),
    [
        (image_input(["bm90IGFuIGltYWdl"], [1]), 400, "image_bytes[0]"),
        (image_input(["***"], [1]), 400, "base64"),
        (image_input([3], [1]), 400, "base64"),
        (image_input(["", ""], [1]), 400, "elements"),
        (image_input([], [0]), 400, "shape"),
        (image_input(["aGVsbG8="], [1, 2]), 400, "shape"),
        (image_input([0.5], [1], "FP32"), 400, "BYTES"),
        (image_input("aGVsbG8=", [1]), 400, "list"),
    ],
)
def test_image_bytes_errors(
    client: falcon.testing.TestClient, document: dict[str, Any], status: int, fragment: str
) -> None:
    result = post_json(client, document)
    assert result.status_code == status
    assert fragment in result.json["error"]


def test_too_many_images_is_413(settings: Settings, repository: ModelRepository) -> None:
    client = client_with(settings, repository, max_files=2)
    data = [base64.b64encode(digit_png()).decode()] * 3
    result = post_json(client, image_input(data, [3]))
    assert result.status_code == 413
    assert "images" in result.json["error"]


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack("<I", 100) + b"short",
        struct.pack("<I", 2) + b"ab" + b"extra",
        b"\x01\x00",
    ],
)
def test_image_bytes_binary_framing_errors(client: falcon.testing.TestClient, raw: bytes) -> None:
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        },
        [raw],
    )
    result = client.simulate_post(INFER, body=body, headers=headers)
    assert result.status_code == 400
    assert "BYTES" in result.json["error"]


# Bad requests: every one a 4xx with {"error": ...}.

GOOD = fp32_input(pixel_batch(1))


DROP = object()


def with_input(**changes: Any) -> dict[str, Any]:
    """A request whose one input is GOOD with ``changes``; a key set to DROP is removed."""
    tensor = {**GOOD, **changes}
    return {"inputs": [{key: value for key, value in tensor.items() if value is not DROP}]}


BAD_JSON_REQUESTS = [
    pytest.param(b"", 400, "empty", id="empty-body"),
    pytest.param(b"{not json", 400, "JSON", id="malformed-json"),
    pytest.param(b"[1, 2]", 400, "object", id="not-an-object"),
    pytest.param(b"{}", 400, "inputs", id="no-inputs"),
    pytest.param({"inputs": []}, 400, "inputs", id="empty-inputs"),
    pytest.param({"inputs": [GOOD, GOOD]}, 400, "exactly one input", id="two-inputs"),
    pytest.param({"inputs": ["image"]}, 400, "object", id="input-not-object"),
    pytest.param(with_input(name="pixels"), 400, "unknown input 'pixels'", id="unknown-input"),
    pytest.param(with_input(name=DROP), 400, "name", id="no-name"),
    pytest.param(with_input(datatype="INT32"), 400, "FP32", id="wrong-datatype"),
    pytest.param(with_input(datatype=DROP), 400, "datatype", id="no-datatype"),
    pytest.param(with_input(shape=[1, 783]), 400, "shape", id="wrong-shape"),
    pytest.param(with_input(shape=[1, 28, 29, 1]), 400, "shape", id="wrong-shape-4d"),
    pytest.param(with_input(shape=[784]), 400, "shape", id="no-batch-dimension"),
    pytest.param(with_input(shape=[0, 28, 28, 1], data=[]), 400, "batch", id="batch-zero"),
    pytest.param(with_input(shape=[1, -28, 28, 1]), 400, "shape", id="negative-dimension"),
    pytest.param(with_input(shape="1,784"), 400, "shape", id="shape-not-list"),
    pytest.param(with_input(shape=[2, 28, 28, 1]), 400, "1568", id="too-few-elements"),
    pytest.param(with_input(data=[0.5] * 785), 400, "785", id="too-many-elements"),
    pytest.param(with_input(data=[[0.5] * 700, [0.5] * 84]), 400, "numbers", id="ragged"),
    pytest.param(with_input(data=["dark"] * 784), 400, "numbers", id="strings"),
    pytest.param(with_input(data=[None] * 784), 400, "null", id="nulls"),
    pytest.param(with_input(data=[{"value": 1}] * 784), 400, "numbers", id="objects"),
    pytest.param(with_input(data=[[0.5] * 783, 0.5]), 400, "numbers", id="mixed-nesting"),
    pytest.param(with_input(data="0.5"), 400, "list", id="data-not-list"),
    pytest.param(with_input(data=DROP), 400, "data", id="no-data"),
    pytest.param(with_input(data=[2.0] * 784), 400, "[0, 1]", id="above-one"),
    pytest.param(with_input(data=[-0.5] * 784), 400, "[0, 1]", id="below-zero"),
    pytest.param(with_input(data=[1e39] * 784), 400, "infinite", id="overflow-to-infinity"),
    pytest.param({**with_input(), "id": 42}, 400, "id", id="id-not-string"),
    pytest.param(
        {**with_input(), "parameters": [1]}, 400, "parameters", id="parameters-not-object"
    ),
    pytest.param(
        {**with_input(), "outputs": "probabilities"}, 400, "outputs", id="outputs-not-list"
    ),
    pytest.param({**with_input(), "outputs": [{"id": 1}]}, 400, "name", id="output-without-name"),
    pytest.param(
        {
            **with_input(),
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": "yes"}}],
        },
        400,
        "binary_data",
        id="binary-data-not-bool",
    ),
    pytest.param(
        {**with_input(), "parameters": {"binary_data_output": 1}},
        400,
        "binary_data_output",
        id="binary-data-output-not-bool",
    ),
    pytest.param(
        with_input(parameters={"binary_data_size": 3136}), 400, "both", id="data-and-binary-size"
    ),
    pytest.param(
        with_input(data=DROP, parameters={"binary_data_size": 3136}),
        400,
        "remain",
        id="binary-size-without-bytes",
    ),
]


@pytest.mark.parametrize(("document", "status", "fragment"), BAD_JSON_REQUESTS)
def test_bad_requests(
    client: falcon.testing.TestClient, document: Any, status: int, fragment: str
) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    result = client.simulate_post(INFER, body=body)
    assert result.status_code == status, result.text
    assert set(result.json) == {"error"}
    assert fragment in result.json["error"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(
            with_input(shape=[1, -28, 28, 1]),
            "Expected `int` >= 0 - at `$.inputs[0].shape[1]`",
            id="negative-dimension",
        ),
        pytest.param(
            with_input(name=7), "Expected `str`, got `int` - at `$.inputs[0].name`", id="name-int"
        ),
        pytest.param(
            {**with_input(), "parameters": {"binary_data_output": 1}},
            "Expected `bool`, got `int` - at `$.parameters.binary_data_output`",
            id="binary-data-output-not-bool",
        ),
        pytest.param(
            {
                **with_input(),
                "outputs": [{"name": "probabilities", "parameters": {"classification": True}}],
            },
            "Expected `int`, got `bool` - at `$.outputs[0].parameters.classification`",
            id="classification-bool",
        ),
        pytest.param(
            {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 784]}], "id": 3},
            "Expected `str | null`, got `int` - at `$.id`",
            id="id-not-string",
        ),
    ],
)
def test_structure_errors_name_the_field_and_what_was_expected(
    client: falcon.testing.TestClient, document: Any, message: str
) -> None:
    result = post_json(client, document)
    assert result.status_code == 400
    assert result.json["error"] == f"invalid inference request: {message}"


def test_deeply_nested_data_is_400(client: falcon.testing.TestClient) -> None:
    data = "[" * 100_000 + "]" * 100_000
    body = '{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 784], "data": %s}]}'
    result = client.simulate_post(INFER, body=body % data)
    assert result.status_code == 400
    assert "depth limit" in result.json["error"]


def test_integers_beyond_any_float_are_400(client: falcon.testing.TestClient) -> None:
    body = json.dumps(with_input(data=[10**400] * 784))
    result = client.simulate_post(INFER, body=body)
    assert result.status_code == 400
    assert "infinity" in result.json["error"]


def binary_fp32(values: np.ndarray, shape: list[int], size: int | None = None, extra: bytes = b""):
    raw = values.astype("<f4").tobytes()
    return binary_request(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": shape,
                    "parameters": {"binary_data_size": len(raw) if size is None else size},
                }
            ]
        },
        [raw, extra],
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite"), (1.5, "[0, 1]")],
)
def test_binary_non_finite_or_out_of_range_is_400(
    client: falcon.testing.TestClient, value: float, fragment: str
) -> None:
    values = np.zeros(784, dtype=np.float32)
    values[100] = value
    body, headers = binary_fp32(values, [1, 784])
    result = client.simulate_post(INFER, body=body, headers=headers)
    assert result.status_code == 400
    assert fragment in result.json["error"]


def test_pixels_a_hair_outside_the_range_are_accepted(client: falcon.testing.TestClient) -> None:
    values = np.full(784, 1.00001, dtype=np.float32)
    values[0] = -0.00001
    body, headers = binary_fp32(values, [1, 784])
    assert client.simulate_post(INFER, body=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("elements", "size", "extra", "fragment"),
    [
        (784, 3136, b"\x00" * 8, "add up"),
        (783, None, b"", "3136 bytes"),
        (784, -1, b"", "`int` >= 0 - at `$.inputs[0].parameters.binary_data_size`"),
    ],
)
def test_binary_sizes_not_adding_up_is_400(
    client: falcon.testing.TestClient, elements: int, size: int | None, extra: bytes, fragment: str
) -> None:
    body, headers = binary_fp32(np.zeros(elements), [1, 28, 28, 1], size, extra)
    result = client.simulate_post(INFER, body=body, headers=headers)
    assert result.status_code == 400
    assert fragment in result.json["error"]


@pytest.mark.parametrize("length", ["abc", "0", "-5", "999999"])
def test_bad_header_length_is_400(client: falcon.testing.TestClient, length: str) -> None:
    body = json.dumps({"inputs": [GOOD]}).encode()
    result = client.simulate_post(INFER, body=body, headers={HEADER_LENGTH: length})
    assert result.status_code == 400
    assert HEADER_LENGTH in result.json["error"]


def test_too_many_elements_is_413(settings: Settings, repository: ModelRepository) -> None:
    client = client_with(settings, repository, max_tensor_elements=784)
    result = post_json(client, {"inputs": [fp32_input(pixel_batch(2))]})
    assert result.status_code == 413
    assert "1568 elements" in result.json["error"]


def test_body_over_limit_is_413(settings: Settings, repository: ModelRepository) -> None:
    client = client_with(settings, repository, max_body_bytes=1000)
    result = post_json(client, {"inputs": [fp32_input(pixel_batch(1))]})
    assert result.status_code == 413
    assert "limit" in result.json["error"]


def test_gzip_bomb_is_413(settings: Settings, repository: ModelRepository) -> None:
    client = client_with(settings, repository, max_body_bytes=10_000)
    body = gzip.compress(b" " * 1_000_000)
    result = client.simulate_post(INFER, body=body, headers={"Content-Encoding": "gzip"})
    assert result.status_code == 413


@pytest.mark.parametrize(
    ("encoding", "body", "status"), [("br", b"{}", 415), ("gzip", b"not gzip", 400)]
)
def test_bad_content_encoding(
    client: falcon.testing.TestClient, encoding: str, body: bytes, status: int
) -> None:
    result = client.simulate_post(INFER, body=body, headers={"Content-Encoding": encoding})
    assert result.status_code == status
    assert encoding in result.json["error"]


json_values = strategies.recursive(
    strategies.none()
    | strategies.booleans()
    | strategies.integers(-(2**70), 2**70)
    | strategies.floats(allow_nan=False, allow_infinity=False)
    | strategies.text(max_size=8),
    lambda children: (
        strategies.lists(children, max_size=4)
        | strategies.dictionaries(strategies.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)
tensors = strategies.fixed_dictionaries(
    {
        "name": strategies.sampled_from(["image", "image_bytes", "x"]),
        "datatype": strategies.sampled_from(["FP32", "BYTES", "INT8", "FP64"]),
        "shape": strategies.lists(strategies.integers(-2, 800), max_size=4),
        "data": json_values
        | strategies.lists(strategies.floats(-2, 2), max_size=800)
        | strategies.lists(strategies.text(max_size=8), max_size=3),
    },
    optional={
        "parameters": json_values | strategies.fixed_dictionaries({"binary_data_size": json_values})
    },
)
requests = strategies.fixed_dictionaries(
    {"inputs": strategies.lists(tensors, max_size=2) | json_values},
    optional={
        "id": json_values,
        "parameters": json_values,
        "outputs": strategies.lists(
            strategies.fixed_dictionaries(
                {"name": strategies.sampled_from(["probabilities", "y"]) | json_values},
                optional={
                    "parameters": strategies.fixed_dictionaries(
                        {},
                        optional={"classification": json_values, "binary_data": json_values},
                    )
                },
            ),
            max_size=2,
        )
        | json_values,
    },
)


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=requests | json_values)
def test_arbitrary_requests_never_get_a_5xx(
    client: falcon.testing.TestClient, document: Any
) -> None:
    result = client.simulate_post(INFER, body=json.dumps(document))
    assert 200 <= result.status_code < 500
    if result.status_code >= 400:
        assert isinstance(result.json["error"], str)
