"""The v2 data plane: a parsed request in, the model run once on the whole batch, the
encoded response out. Knows nothing of HTTP."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from serve import images
from serve.errors import InvalidInput
from serve.model.runtime import OnnxModel
from serve.observability import metrics
from serve.settings import Settings
from serve.v2 import outputs, tensors
from serve.v2.request import InferenceRequest, InputTensor


@dataclasses.dataclass(frozen=True)
class InferenceResult:
    """An encoded response and the batch size it answered."""

    response: outputs.EncodedResponse
    batch_size: int


def infer(model: OnnxModel, request: InferenceRequest, settings: Settings) -> InferenceResult:
    """Check the request against ``model``, run it as one batch and encode the answer."""
    info = model.info
    accepted = (info.input_name, tensors.IMAGE_INPUT)
    if len(request.inputs) != 1:
        raise InvalidInput(
            f"expected exactly one input ({' or '.join(map(repr, accepted))}), "
            f"got {len(request.inputs)}"
        )
    tensor = request.inputs[0]
    if tensor.name not in accepted:
        raise InvalidInput(
            f"unknown input {tensor.name!r}; this model takes {' or '.join(map(repr, accepted))}"
        )
    wanted = outputs.requested(request, info)
    started = time.perf_counter()
    if tensor.name == tensors.IMAGE_INPUT:
        digits = _digits(tensor, settings)
        inferring = time.perf_counter()
        probabilities = model.predict(digits)
    else:
        pixels = tensors.pixels(tensor, info.input_shape, settings.max_tensor_elements)
        inferring = time.perf_counter()
        probabilities = model.run(pixels)
    answering = time.perf_counter()
    response = outputs.encode(request, info, wanted, probabilities)
    batch_size = int(probabilities.shape[0])
    metrics.observe_inference(
        info.name,
        info.version,
        images=batch_size,
        input_seconds=inferring - started,
        infer_seconds=answering - inferring,
        output_seconds=time.perf_counter() - answering,
    )
    return InferenceResult(response, batch_size)


def _digits(tensor: InputTensor, settings: Settings) -> np.ndarray:
    """Decode and normalise each encoded image exactly as /predict does: ``[n, 28, 28]``."""
    encoded = tensors.encoded_images(tensor, settings.max_files)
    images.require_pixel_budget(encoded, settings.max_request_pixels)
    return np.stack(
        [
            images.read_digit(data, settings.max_image_pixels, f"{tensors.IMAGE_INPUT}[{index}]")
            for index, data in enumerate(encoded)
        ]
    )
