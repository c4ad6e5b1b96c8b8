"""Versions of the tools a model was made with, read without importing them."""

from __future__ import annotations

import importlib.metadata
import platform

#: Package names to report, each with the distributions that provide it.
PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu"),
    "keras": ("keras",),
    "tf2onnx": ("tf2onnx",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "numpy": ("numpy",),
}


def versions() -> dict[str, str]:
    """Installed versions of TensorFlow, Keras, tf2onnx, ONNX, onnxruntime, numpy and Python."""
    found: dict[str, str] = {}
    for name, distributions in PACKAGES.items():
        for distribution in distributions:
            try:
                found[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            found[name] = "not installed"
    found["python"] = platform.python_version()
    return found
