"""The parity gate passes a faithful model and stops a wrong one, with the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export import parity
from tests.fakes import write_fake_model


def reference_probabilities(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    """What the fake model computes, softmax(x @ W + b), in numpy: the 'Keras' side."""
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    logits = inputs.reshape(len(inputs), -1) @ weights["weights"] + weights["bias"]
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)


def perturbed(model: onnx.ModelProto, scale: float) -> onnx.ModelProto:
    """A copy whose weights have noise of ``scale`` added: a deliberately wrong export."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in copy.graph.initializer:
        if tensor.name == "weights":
            values = numpy_helper.to_array(tensor)
            noise = np.random.default_rng(1).normal(0.0, scale, values.shape)
            tensor.CopyFrom(numpy_helper.from_array((values + noise).astype(np.float32), "weights"))
    return copy


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, np.ndarray]:
    path = write_fake_model(Path(tmp_path_factory.mktemp("parity")) / "m.onnx", layout="flat")
    inputs = np.random.default_rng(0).random((500, 784), dtype=np.float32)
    return onnx.load(str(path)), inputs


def test_faithful_model_passes(case: tuple[onnx.ModelProto, np.ndarray]) -> None:
    model, inputs = case
    reference = reference_probabilities(model, inputs)
    labels = reference.argmax(axis=1)
    report = parity.gate(model, inputs, reference, labels)
    assert report.passed
    assert report.argmax_mismatches == 0
    assert report.max_abs_difference < 1e-5
    assert report.accuracy == 1.0


def test_wrong_model_is_stopped_with_numbers(case: tuple[onnx.ModelProto, np.ndarray]) -> None:
    model, inputs = case
    reference = reference_probabilities(model, inputs)
    with pytest.raises(parity.ParityError, match=r"500 images: \d+ argmax mismatches, max"):
        parity.gate(perturbed(model, 0.05), inputs, reference, reference.argmax(axis=1))


def test_small_drift_without_label_change_is_still_caught(
    case: tuple[onnx.ModelProto, np.ndarray],
) -> None:
    model, inputs = case
    reference = reference_probabilities(model, inputs)
    report = parity.compare(reference, reference + 2e-4, reference.argmax(axis=1))
    assert report.argmax_mismatches == 0
    assert not report.passed
    with pytest.raises(parity.ParityError, match="max"):
        parity.gate(perturbed(model, 0.001), inputs, reference, reference.argmax(axis=1))


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(parity.ParityError, match="shapes differ"):
        parity.compare(np.zeros((2, 10)), np.zeros((2, 9)), np.zeros(2))
