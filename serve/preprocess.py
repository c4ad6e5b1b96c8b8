"""Turning any decoded digit image into the 28x28 MNIST-normalised array (first version)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_mnist(image: Image.Image) -> np.ndarray:
    """Return a ``[28, 28]`` float32 array in [0, 1], white digit on black."""
    grey = image.convert("L").resize((28, 28))
    return np.asarray(grey, dtype=np.float32) / 255.0
