"""The inference request: JSON header (plus binary data) checked into plain objects.

The request's shape is declared once, as msgspec structs named after the Open Inference
Protocol's ``inference_request``, ``request_input`` and ``request_output`` schemas;
converting the parsed JSON into them checks it. Whether its tensors fit the model is
``serve.v2.tensors``' job.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, TypeVar

import msgspec
import orjson

from serve.errors import InvalidInput
from serve.v2 import binary

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_Struct = TypeVar("_Struct", bound=msgspec.Struct)


class InputParameters(msgspec.Struct, frozen=True):
    """The ``parameters`` of one input read here; others are allowed and ignored."""

    #: Binary tensor data extension: the input's bytes follow the JSON header.
    binary_data_size: NonNegative | None = None


class RequestInput(msgspec.Struct, frozen=True):
    """``request_input``: ``data`` is any JSON (nested numbers, base64 strings), flattened
    and checked against the model later; absent when the bytes come in the binary part."""

    name: str
    shape: tuple[NonNegative, ...]
    datatype: str
    parameters: InputParameters | None = None
    data: Any = msgspec.UNSET


class OutputParameters(msgspec.Struct, frozen=True):
    """The ``parameters`` of one requested output read here."""

    #: Binary tensor data extension: answer this output in the binary part (default: the
    #: request's ``binary_data_output``).
    binary_data: bool | msgspec.UnsetType = msgspec.UNSET
    #: Classification extension: the number of top classes to answer; 0 for the tensor.
    classification: NonNegative = 0


class RequestOutput(msgspec.Struct, frozen=True):
    """``request_output``: an output asked for by name."""

    name: str
    parameters: OutputParameters | None = None


class RequestParameters(msgspec.Struct, frozen=True):
    """The request-level ``parameters`` read here (all of them are echoed back)."""

    #: Binary tensor data extension: the default for outputs not saying otherwise.
    binary_data_output: bool = False


class RequestDocument(msgspec.Struct, frozen=True):
    """``inference_request``: the JSON part of the body."""

    inputs: Annotated[list[RequestInput], msgspec.Meta(min_length=1)]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestOutput] | None = None


_NO_OUTPUT_PARAMETERS = OutputParameters()


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
    ``header_length`` is given); raises InvalidInput naming what is wrong and where."""
    if not body:
        raise InvalidInput("the request body is empty; expected a JSON inference request")
    header, raw = binary.split_body(body, header_length)
    try:
        # orjson parses (its floats are the fastest, its depth limit guards the stack); the
        # structs then check what it made of the header, passing ``data`` through as is.
        decoded = orjson.loads(header)
    except orjson.JSONDecodeError as ex:
        raise InvalidInput(f"the request is not valid JSON: {ex}") from ex
    document = _checked(decoded, RequestDocument, "$")
    # Every request-level parameter is echoed back, so they are kept as a dict; the ones
    # read here are checked on their own.
    parameters = _checked(document.parameters or {}, RequestParameters, "$.parameters")
    binary_output = parameters.binary_data_output
    return InferenceRequest(
        inputs=_inputs(document.inputs, raw),
        outputs=_outputs(document.outputs, binary_output),
        binary_output=binary_output,
        id=document.id,
        parameters=document.parameters,
    )


def _checked(value: Any, struct: type[_Struct], path: str) -> _Struct:
    """``value`` as a ``struct``; InvalidInput naming the field at fault as a JSON path (under
    ``path``) and what was expected, e.g. "Expected `str | null`, got `int` - at `$.id`"."""
    try:
        return msgspec.convert(value, struct)
    except msgspec.ValidationError as ex:
        message = str(ex).replace("`$", f"`{path}", 1)
        raise InvalidInput(f"invalid inference request: {message}") from ex


def _inputs(entries: list[RequestInput], raw: memoryview) -> list[InputTensor]:
    """The inputs, each with its JSON ``data`` or its slice of the binary part ``raw``,
    which their ``binary_data_size`` must fill exactly."""
    tensors = []
    offset = 0
    for entry in entries:
        size = entry.parameters.binary_data_size if entry.parameters else None
        if size is None:
            if entry.data is msgspec.UNSET:
                raise InvalidInput(f"input {entry.name!r} has neither 'data' nor binary_data_size")
            tensors.append(InputTensor(entry.name, entry.datatype, entry.shape, data=entry.data))
            continue
        if entry.data is not msgspec.UNSET:
            raise InvalidInput(f"input {entry.name!r} has both 'data' and binary_data_size")
        if offset + size > len(raw):
            raise InvalidInput(
                f"input {entry.name!r} declares {size} bytes of binary data but only "
                f"{len(raw) - offset} remain after the JSON header"
            )
        chunk = raw[offset : offset + size]
        tensors.append(InputTensor(entry.name, entry.datatype, entry.shape, raw=chunk))
        offset += size
    if offset != len(raw):
        raise InvalidInput(
            f"the body holds {len(raw)} bytes after the JSON header but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return tensors


def _outputs(
    entries: list[RequestOutput] | None, binary_output: bool
) -> list[OutputRequest] | None:
    """The requested outputs, ``binary_output`` the default of their ``binary_data``."""
    if entries is None:
        return None
    outputs = []
    for entry in entries:
        parameters = entry.parameters or _NO_OUTPUT_PARAMETERS
        binary_data = parameters.binary_data
        if binary_data is msgspec.UNSET:
            binary_data = binary_output
        outputs.append(OutputRequest(entry.name, binary_data, parameters.classification))
    return outputs
