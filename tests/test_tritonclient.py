"""The real ``tritonclient.http`` client against real gunicorn (2 workers) speaking v2.

Runs over the committed models when both exist, else over the fake ones.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image, ImageDraw
from tritonclient.utils import InferenceServerException

from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.conftest import COMMITTED_MODELS
from tests.fakes import fake_model_dir
from tests.images import encoded
from tests.servers import start_gunicorn
from train import data

pytestmark = pytest.mark.slow

MODELS = ("cnn", "softmax")
#: Least accuracy of the committed models on the first 1,000 MNIST test digits, served.
SERVED_ACCURACY = {"softmax": 0.9, "cnn": 0.99}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed models when both are there, else fakes."""
    if all((COMMITTED_MODELS / f"{name}.onnx").exists() for name in MODELS):
        return COMMITTED_MODELS
    return fake_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def local(model_dir: Path) -> ModelRepository:
    """The same models, run in this process, to compare answers with."""
    return ModelRepository.load(model_dir, "cnn", "cpu", 1)


@pytest.fixture(scope="module")
def base_url(model_dir: Path) -> Iterator[str]:
    """gunicorn with 2 workers over ``model_dir``."""
    with start_gunicorn(model_dir, workers=2) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[triton.InferenceServerClient]:
    """A tritonclient HTTP client connected to the server."""
    connection = triton.InferenceServerClient(url=base_url.removeprefix("http://"))
    yield connection
    connection.close()


def pixel_input(
    local: ModelRepository, name: str, batch: int, binary: bool = True
) -> tuple[np.ndarray, triton.InferInput]:
    """Random pixels in [0, 1] in model ``name``'s own input layout, and the FP32 input
    carrying them (as binary tensor data, or as JSON)."""
    info = local.get(name).info
    shape = (batch, *info.input_shape[1:])
    pixels = np.random.default_rng(batch).random(shape, dtype=np.float32)
    tensor = triton.InferInput(info.input_name, list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    return pixels, tensor


def digit_png(offset: int) -> bytes:
    """A white stroke on black as PNG bytes."""
    image = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(image).line([(20 + offset, 6), (16, 34)], fill=255, width=4)
    return encoded(image)


def test_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in MODELS:
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, "1")
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("cnn", "9")


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_server_metadata()
    assert metadata["name"] == "mnist-onnx-serve"
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])


@pytest.mark.parametrize("name", MODELS)
def test_model_metadata(
    client: triton.InferenceServerClient, local: ModelRepository, name: str
) -> None:
    info = local.get(name).info
    metadata = client.get_model_metadata(name, "1")
    assert metadata["name"] == name
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"][0] == {
        "name": info.input_name,
        "datatype": "FP32",
        "shape": list(info.input_shape),
    }
    assert metadata["inputs"][1]["datatype"] == "BYTES"
    assert metadata["outputs"][0]["shape"] == [-1, 10]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("nope")
    assert raised.value.status() == "404"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer(
    client: triton.InferenceServerClient, local: ModelRepository, name: str, binary: bool
) -> None:
    info = local.get(name).info
    batch, tensor = pixel_input(local, name, 5, binary)
    output = triton.InferRequestedOutput(info.output_name, binary_data=binary)
    result = client.infer(name, [tensor], request_id="r1", outputs=[output])
    probabilities = result.as_numpy(info.output_name)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities, local.get(name).run(batch), rtol=1e-5, atol=1e-7)
    response = result.get_response()
    assert response["id"] == "r1"
    assert response["model_name"] == name
    assert response["model_version"] == "1"


@pytest.mark.parametrize("name", MODELS)
def test_infer_without_outputs_answers_binary(
    client: triton.InferenceServerClient, local: ModelRepository, name: str
) -> None:
    info = local.get(name).info
    batch, tensor = pixel_input(local, name, 2)
    result = client.infer(name, [tensor], model_version="1")
    np.testing.assert_allclose(
        result.as_numpy(info.output_name), local.get(name).run(batch), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_class_count(
    client: triton.InferenceServerClient, local: ModelRepository, name: str, binary: bool
) -> None:
    info = local.get(name).info
    batch, tensor = pixel_input(local, name, 4, binary)
    output = triton.InferRequestedOutput(info.output_name, binary_data=binary, class_count=3)
    classes = client.infer(name, [tensor], outputs=[output]).as_numpy(info.output_name)
    assert classes.shape == (4, 3)
    expected = local.get(name).run(batch)
    for row, probabilities in zip(classes, expected, strict=True):
        texts = [item.decode() if isinstance(item, bytes) else item for item in row]
        indices = [int(text.split(":")[1]) for text in texts]
        assert indices == list(np.argsort(-probabilities, kind="stable")[:3])
        values = [float(text.split(":")[0]) for text in texts]
        np.testing.assert_allclose(values, probabilities[indices], rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_infer_encoded_images(
    client: triton.InferenceServerClient, local: ModelRepository, name: str
) -> None:
    images = [digit_png(0), digit_png(8), digit_png(-6)]
    limit = Settings().max_image_pixels
    expected = local.get(name).predict(
        np.stack([normalise.to_mnist(decode.decode(data, limit)) for data in images])
    )
    binary_tensor = triton.InferInput("image_bytes", [3, 1], "BYTES")
    binary_tensor.set_data_from_numpy(np.array([[data] for data in images], dtype=np.object_))
    json_tensor = triton.InferInput("image_bytes", [3], "BYTES")
    json_tensor.set_data_from_numpy(
        np.array([base64.b64encode(data).decode() for data in images], dtype=np.object_),
        binary_data=False,
    )
    for tensor in (binary_tensor, json_tensor):
        result = client.infer(name, [tensor])
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5)


def test_errors_reach_the_client(
    client: triton.InferenceServerClient, local: ModelRepository
) -> None:
    info = local.get("cnn").info
    tensor = triton.InferInput(info.input_name, [1, 27, 27], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 27, 27), dtype=np.float32))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("cnn", [tensor])
    assert raised.value.status() == "400"
    assert "shape" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        client.infer("nope", [tensor])
    assert raised.value.status() == "404"


@pytest.mark.parametrize("name", MODELS)
def test_committed_models_read_real_digits(
    client: triton.InferenceServerClient, model_dir: Path, mnist_dir: Path, name: str
) -> None:
    if model_dir != COMMITTED_MODELS:
        pytest.skip("the committed models are not there yet")
    test = data.load_mnist(mnist_dir, download=False).test.head(1000)
    labels = []
    for start in range(0, len(test), 250):
        batch = data.to_float(test.images[start : start + 250]).reshape(-1, 784)
        tensor = triton.InferInput("image", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        result = client.infer(name, [tensor])
        labels.append(result.as_numpy("probabilities").argmax(axis=1))
    accuracy = float(np.mean(np.concatenate(labels) == test.labels))
    assert accuracy >= SERVED_ACCURACY[name]


def test_chunked_request_body(base_url: str) -> None:
    """A body sent with chunked transfer encoding (no Content-Length) is read in full."""
    body = json.dumps(
        {"inputs": [{"name": "image", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}
    ).encode()
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            "/v2/models/cnn/infer",
            body=iter([body[:1000], body[1000:]]),
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["outputs"][0]["shape"] == [1, 10]
    finally:
        connection.close()
