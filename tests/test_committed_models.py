"""The committed models: the contract serving relies on, and their accuracy on MNIST's test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from export import metadata
from train import contract, data

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "onnx_models"
#: Least test accuracy each committed model must reach, measured by onnxruntime.
REQUIRED_ACCURACY = {"softmax": 0.92, "cnn": 0.995}
INPUT_SHAPES = {"softmax": ["batch", 784], "cnn": ["batch", 28, 28, 1]}
MAX_BYTES = 5_000_000


def session(name: str) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(
        str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"]
    )


@pytest.mark.parametrize("name", sorted(REQUIRED_ACCURACY))
def test_contract(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    assert path.stat().st_size <= MAX_BYTES
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {opset.version for opset in model.opset_import if opset.domain == ""} == {17}
    runner = session(name)
    (model_input,), (model_output,) = runner.get_inputs(), runner.get_outputs()
    assert (model_input.name, model_input.type) == ("image", "tensor(float)")
    assert model_input.shape == INPUT_SHAPES[name]
    assert (model_output.name, model_output.shape) == ("probabilities", ["batch", 10])
    entries = metadata.read(model)
    assert entries["name"] == name
    assert entries["classifier"] == contract.CLASSIFIER_NAMES[name]
    assert entries["version"] == "1"
    assert entries["input_layout"] == contract.INPUT_LAYOUTS[name]
    assert json.loads(entries["labels"]) == [str(digit) for digit in range(10)]
    assert entries["opset"] == "17"
    assert entries["test_images"] == "10000"
    assert set(json.loads(entries["versions"])) >= {"tensorflow", "tf2onnx", "onnxruntime"}


@pytest.mark.parametrize("name", sorted(REQUIRED_ACCURACY))
def test_batches_of_any_size(name: str) -> None:
    runner = session(name)
    shape = [dim if isinstance(dim, int) else 7 for dim in runner.get_inputs()[0].shape]
    inputs = np.random.default_rng(0).random(shape, dtype=np.float32)
    probabilities = runner.run(None, {"image": inputs})[0]
    assert probabilities.shape == (7, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> data.Mnist:
    return data.load_mnist(mnist_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REQUIRED_ACCURACY))
def test_accuracy_on_the_full_test_set(name: str, mnist: data.Mnist) -> None:
    runner = session(name)
    shape = runner.get_inputs()[0].shape[1:]
    inputs = data.to_float(mnist.test.images).reshape(len(mnist.test), *shape)
    probabilities = runner.run(None, {"image": inputs})[0]
    accuracy = float(np.mean(probabilities.argmax(axis=1) == mnist.test.labels))
    entries = metadata.read(onnx.load(str(MODELS / f"{name}.onnx")))
    assert accuracy >= REQUIRED_ACCURACY[name]
    assert abs(accuracy - float(entries["test_accuracy"])) <= 0.0005
    assert entries["train_data_sha256"] == mnist.train_sha256
