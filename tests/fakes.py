"""Tiny real ONNX models built with onnx.helper (no TensorFlow), in place of the trained ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write_fake_model(
    path: Path,
    name: str = "cnn",
    layout: str = "nhwc",
    seed: int = 0,
    version: str = "1",
) -> Path:
    """Write a model with the contract of the real ones: input ``image`` ``[batch, 28, 28, 1]``
    (``layout="nhwc"``) or ``[batch, 784]`` (``layout="flat"``), output ``probabilities``
    ``[batch, 10]`` = softmax(flatten(image) @ W + b), with W, b drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.05, (784, 10)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, (10,)).astype(np.float32)
    input_shape: list[int | str] = ["batch", 28, 28, 1] if layout == "nhwc" else ["batch", 784]
    nodes = [
        helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weights"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        f"fake_{name}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    classifier = {"cnn": "CNNClassifier", "softmax": "SoftmaxClassifier"}.get(name, name)
    for key, value in {
        "name": name,
        "classifier": classifier,
        "version": version,
        "labels": json.dumps([str(digit) for digit in range(10)]),
        "test_accuracy": "0.1",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def fake_model_dir(directory: Path) -> Path:
    """A folder with a fake ``cnn`` (NHWC input) and a fake ``softmax`` (flat input)."""
    write_fake_model(directory / "cnn.onnx", "cnn", "nhwc", seed=1)
    write_fake_model(directory / "softmax.onnx", "softmax", "flat", seed=2)
    return directory
