"""Output tensors of the response: raw FP32 probabilities or top-k classifications, each as
JSON ``data`` or as binary bytes appended after the JSON header."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson

from serve.errors import InvalidInput
from serve.model.runtime import ModelInfo
from serve.v2 import binary
from serve.v2.request import InferenceRequest, OutputRequest


@dataclasses.dataclass(frozen=True)
class EncodedResponse:
    """A response body, and the JSON header's length when binary data follows it."""

    body: bytes
    header_length: int | None


def classify(probabilities: np.ndarray, count: int) -> np.ndarray:
    """Top-``count`` classes per row as ``"<probability>:<index>"`` strings, highest first
    (ties by index), as Triton's classification extension answers; shape ``[batch, k]``."""
    count = min(count, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
    values = np.take_along_axis(probabilities, order, axis=1)
    return np.array(
        [
            [f"{value:g}:{index}" for value, index in zip(row_values, row_order, strict=True)]
            for row_values, row_order in zip(values.tolist(), order.tolist(), strict=True)
        ],
        dtype=object,
    ).reshape(probabilities.shape[0], count)


def requested(request: InferenceRequest, info: ModelInfo) -> list[OutputRequest]:
    """The outputs to answer: those asked for (each must exist), else (no ``outputs``, or
    an empty list) every model output."""
    if not request.outputs:
        return [OutputRequest(info.output_name, request.binary_output)]
    for output in request.outputs:
        if output.name != info.output_name:
            raise InvalidInput(
                f"unknown output {output.name!r}; the model's output is {info.output_name!r}"
            )
    return request.outputs


def encode(
    request: InferenceRequest,
    info: ModelInfo,
    outputs: list[OutputRequest],
    probabilities: np.ndarray,
) -> EncodedResponse:
    """Build the inference response body for ``probabilities`` (``[batch, classes]``)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in outputs:
        if output.classification:
            tensor = classify(probabilities, output.classification)
            datatype = "BYTES"
        else:
            tensor = np.ascontiguousarray(probabilities, dtype="<f4")
            datatype = "FP32"
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": datatype,
            "shape": list(tensor.shape),
        }
        if output.binary:
            chunk = (
                binary.join_elements(text.encode() for text in tensor.ravel())
                if datatype == "BYTES"
                else tensor.tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = tensor.ravel().tolist() if datatype == "BYTES" else tensor.ravel()
        entries.append(entry)
    document: dict[str, Any] = {"model_name": info.name}
    if info.version:
        document["model_version"] = info.version
    if request.id is not None:
        document["id"] = request.id
    if request.parameters is not None:
        document["parameters"] = request.parameters
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *chunks]), len(header))
