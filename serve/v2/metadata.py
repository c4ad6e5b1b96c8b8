"""Server and model metadata documents, and model lookup by name and version."""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

from serve.errors import ModelNotFound
from serve.model.runtime import ModelRepository, OnnxModel
from serve.v2.tensors import IMAGE_INPUT

SERVER_NAME = "mnist-onnx-serve"
#: Protocol extensions implemented here, as Triton names them.
EXTENSIONS = ("binary_tensor_data", "classification")
PLATFORM = "onnxruntime_onnx"


@functools.cache
def server_version() -> str:
    """The installed package's version, read once ("0+unknown" from a bare checkout)."""
    try:
        return importlib.metadata.version(SERVER_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: name, version and extensions of this server."""
    return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}


def find_model(repository: ModelRepository, name: str, version: str | None) -> OnnxModel:
    """The model ``name``, checked to have ``version`` when one is given; ModelNotFound
    (404) for an unknown name or version."""
    model = repository.get(name)
    if version is not None and version != model.info.version:
        raise ModelNotFound(
            f"model {name!r} has no version {version!r}; available: {model.info.version!r}"
        )
    return model


def model_metadata(model: OnnxModel) -> dict[str, Any]:
    """``GET /v2/models/{name}``: versions, platform, both accepted inputs (the model's FP32
    pixels, or encoded images as BYTES), the output, and the model's own metadata."""
    info = model.info
    return {
        "name": info.name,
        "versions": [info.version],
        "platform": PLATFORM,
        "inputs": [
            {"name": info.input_name, "datatype": "FP32", "shape": list(info.input_shape)},
            {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": info.output_name, "datatype": "FP32", "shape": list(info.output_shape)}
        ],
        "parameters": dict(info.metadata),
    }
