"""Export one trained model: convert, prove parity on the test set, embed metadata, save."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export import convert, metadata, parity
from train import data

log = logging.getLogger(__name__)


class ExportError(Exception):
    """The export cannot go ahead: a missing model or summary, or a failed parity check."""


@dataclasses.dataclass(frozen=True)
class Request:
    """What ``python -m export`` was asked to do."""

    model: str
    keras_path: Path
    output: Path
    data_dir: Path | None = None
    opset: int = convert.OPSET
    tolerance: float = parity.TOLERANCE
    test_images: int | None = None
    version: str = "1"
    command: str = ""


def read_training_summary(keras_path: Path) -> dict[str, Any]:
    """The ``.json`` summary ``python -m train`` wrote next to the ``.keras`` file."""
    summary_path = keras_path.with_suffix(".json")
    try:
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:
        raise ExportError(f"{summary_path}: training summary unreadable ({error})") from error
    return summary


def export(request: Request) -> tuple[onnx.ModelProto, parity.ParityReport]:
    """Convert ``request.keras_path`` to ONNX, run the parity gate against Keras on the MNIST
    test images, embed the metadata and save to ``request.output``. Raises ExportError."""
    import keras

    if not request.keras_path.is_file():
        raise ExportError(
            f"{request.keras_path} not found: run `python -m train --model {request.model}` first"
        )
    training = read_training_summary(request.keras_path)
    keras_model = keras.models.load_model(request.keras_path)
    onnx_model = convert.to_onnx(keras_model, request.opset)

    test = data.load_mnist(request.data_dir).test
    if request.test_images is not None:
        test = test.head(request.test_images)
    inputs = data.to_model_input(test.images, keras_model.input_shape[1:])
    reference = np.asarray(keras_model.predict(inputs, batch_size=1_000, verbose=0))
    try:
        report = parity.gate(onnx_model, inputs, reference, test.labels, request.tolerance)
    except parity.ParityError as error:
        raise ExportError(f"{request.model}: {error}; nothing written") from error

    metadata.embed(
        onnx_model,
        metadata.build_metadata(
            request.model,
            training,
            report,
            request.opset,
            int(keras_model.count_params()),
            request.version,
            request.command,
        ),
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    request.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, str(request.output))
    log.info("wrote %s (%d bytes)", request.output, request.output.stat().st_size)
    return onnx_model, report
