"""The inference request: JSON header (plus binary data) checked into plain objects.

Only the request's structure is checked here; whether its tensors fit the model is
``serve.v2.tensors``' job.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from serve.errors import InvalidInput
from serve.v2 import binary


@dataclasses.dataclass(frozen=True)
class InputTensor:
    """One ``inputs`` entry: JSON ``data``, or ``raw`` bytes from the binary part."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None
    raw: memoryview | None = None


@dataclasses.dataclass(frozen=True)
class OutputRequest:
    """One ``outputs`` entry: its name, whether to answer in binary (its own
    ``binary_data``, else the request's ``binary_data_output``), the top-k asked for."""

    name: str
    binary: bool
    #: Number of classes asked for by the classification extension; 0 for the raw tensor.
    classification: int = 0


@dataclasses.dataclass(frozen=True)
class InferenceRequest:
    """A whole inference request, structure checked."""

    inputs: list[InputTensor]
    #: The requested outputs; None when the request names none (then all are returned).
    outputs: list[OutputRequest] | None
    #: Request-level ``binary_data_output``: the default for outputs not saying otherwise.
    binary_output: bool
    id: str | None = None
    parameters: dict[str, Any] | None = None


def parse(body: bytes, header_length: str | None) -> InferenceRequest:
    """Parse a request body (JSON, or JSON followed by binary tensor data when
    ``header_length`` is given); raises InvalidInput naming what is wrong."""
    if not body:
        raise InvalidInput("the request body is empty; expected a JSON inference request")
    header, raw = binary.split_body(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as ex:
        raise InvalidInput(f"the request is not valid JSON: {ex}") from ex
    if not isinstance(document, dict):
        raise InvalidInput("the inference request must be a JSON object")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    parameters = _parameters(document.get("parameters"), "the request")
    inputs = _inputs(document.get("inputs"), raw)
    binary_output = _flag(parameters, "binary_data_output", "the request")
    return InferenceRequest(
        inputs=inputs,
        outputs=_outputs(document.get("outputs"), binary_output),
        binary_output=binary_output,
        id=request_id,
        parameters=parameters,
    )


def _parameters(value: Any, owner: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"'parameters' of {owner} must be a JSON object")
    return value


def _flag(parameters: dict[str, Any] | None, key: str, owner: str) -> bool:
    value = (parameters or {}).get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {key!r} of {owner} must be true or false")
    return value


def _inputs(value: Any, raw: memoryview) -> list[InputTensor]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    tensors = []
    offset = 0
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise InvalidInput(f"inputs[{index}] must be a JSON object")
        name = entry.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"inputs[{index}] needs a string 'name'")
        datatype = entry.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInput(f"input {name!r} needs a string 'datatype'")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
            raise InvalidInput(f"input {name!r} needs a 'shape': a list of non-negative integers")
        parameters = _parameters(entry.get("parameters"), f"input {name!r}") or {}
        size = parameters.get("binary_data_size")
        if size is None:
            if "data" not in entry:
                raise InvalidInput(f"input {name!r} has neither 'data' nor binary_data_size")
            tensors.append(InputTensor(name, datatype, tuple(shape), data=entry["data"]))
            continue
        if type(size) is not int or size < 0:
            raise InvalidInput(f"binary_data_size of input {name!r} must be a non-negative integer")
        if "data" in entry:
            raise InvalidInput(f"input {name!r} has both 'data' and binary_data_size")
        if offset + size > len(raw):
            raise InvalidInput(
                f"input {name!r} declares {size} bytes of binary data but only "
                f"{len(raw) - offset} remain after the JSON header"
            )
        tensors.append(InputTensor(name, datatype, tuple(shape), raw=raw[offset : offset + size]))
        offset += size
    if offset != len(raw):
        raise InvalidInput(
            f"the body holds {len(raw)} bytes after the JSON header but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return tensors


def _outputs(value: Any, binary_output: bool) -> list[OutputRequest] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    outputs = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidInput(f"outputs[{index}] must be an object with a string 'name'")
        name = entry["name"]
        owner = f"output {name!r}"
        parameters = _parameters(entry.get("parameters"), owner) or {}
        classification = parameters.get("classification", 0)
        if type(classification) is not int or classification < 0:
            raise InvalidInput(f"'classification' of {owner} must be a positive integer")
        binary_data = parameters.get("binary_data", binary_output)
        if not isinstance(binary_data, bool):
            raise InvalidInput(f"parameter 'binary_data' of {owner} must be true or false")
        outputs.append(OutputRequest(name, binary_data, classification))
    return outputs
