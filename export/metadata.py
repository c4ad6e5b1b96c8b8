"""The ONNX ``metadata_props`` that serving reads: the model contract, written by export."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import onnx

from export.parity import ParityReport
from train.contract import CLASSIFIER_NAMES, INPUT_LAYOUTS
from train.versions import versions

LABELS = [str(digit) for digit in range(10)]
INPUT_SCALING = (
    "float32 pixels in [0, 1], white digit on black, MNIST-normalised: "
    "the digit fitted into 20x20 keeping its aspect ratio and centred by centre of mass in 28x28"
)


def build_metadata(
    name: str,
    training: Mapping[str, Any],
    report: ParityReport,
    opset: int,
    parameters: int,
    version: str = "1",
    export_command: str = "",
) -> dict[str, str]:
    """Every metadata entry for model ``name``, as strings, from the training summary and the
    parity report (whose accuracy is onnxruntime's on the test images)."""
    return {
        "name": name,
        "classifier": CLASSIFIER_NAMES[name],
        "version": version,
        "labels": json.dumps(LABELS),
        "input_layout": INPUT_LAYOUTS[name],
        "input_scaling": INPUT_SCALING,
        "test_accuracy": f"{report.accuracy:.4f}",
        "test_images": str(report.images),
        "parity_max_abs_difference": f"{report.max_abs_difference:.3g}",
        "opset": str(opset),
        "parameters": str(parameters),
        "train_data_sha256": str(training["train_data_sha256"]),
        "trained_at": str(training["trained_at"]),
        "training_command": str(training["training_command"]),
        "training_seconds": str(training["seconds"]),
        "epochs": str(training["epochs"]),
        "seed": str(training["seed"]),
        "export_command": export_command,
        "versions": json.dumps(versions(), sort_keys=True),
        "exported_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def embed(model: onnx.ModelProto, entries: Mapping[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``entries``, in their order."""
    del model.metadata_props[:]
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {entry.key: entry.value for entry in model.metadata_props}
