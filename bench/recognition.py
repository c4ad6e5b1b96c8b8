"""Recognition through the serving preprocessing: how often the CNN labels real-looking
uploads right.

Three figures, each a full round trip through ``serve.images.read_digit`` (decode, then
normalise), the sets made by ``tests.recognition_sets``:
- MNIST's 10,000 test digits, each inverted (black on white), upscaled to 112..280 px with a
  white margin and sent as a JPEG;
- digits 0-9 typed in every TTF/OTF font ``fc-list`` finds, rendered black on white;
- full-size (4032x3024) phone photos of MNIST test digits on paper, upright or EXIF-rotated.

Run: ``python -m bench.recognition [--model onnx_models/cnn.onnx] [--limit N] [--photos N]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from serve.images.decode import decode
from serve.images.normalise import to_mnist
from serve.model.runtime import CPU, OnnxModel
from tests.recognition_sets import (
    FULL_PHOTO,
    MAX_PIXELS,
    MID_PHOTO,
    font_accuracy,
    machine_fonts,
    mnist_as_upload,
    mnist_test_set,
    mnist_upload_accuracy,
    phone_photo,
    phone_photo_accuracy,
)

__all__ = ["font_accuracy", "mnist_as_upload", "mnist_upload_accuracy", "phone_photo_accuracy"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "onnx_models" / "cnn.onnx"
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"

log = logging.getLogger("bench.recognition")


def speed_samples(digit: np.ndarray) -> dict[str, bytes]:
    """One MNIST digit as a 28x28 PNG, a mid-size and a full-size phone photo."""
    buffer = io.BytesIO()
    Image.fromarray(digit, mode="L").save(buffer, format="PNG")
    return {
        "28x28 PNG": buffer.getvalue(),
        "640x480 JPEG": phone_photo(digit, MID_PHOTO, 0, 6),
        "4032x3024 JPEG": phone_photo(digit, FULL_PHOTO, 0, 6),
    }


def cpu_milliseconds(work: Callable[[], object], budget: float = 0.5) -> float:
    """CPU time of one call of ``work`` (best of repeated rounds), in milliseconds."""
    work()
    best = float("inf")
    for _ in range(3):
        calls, started = 0, time.process_time()
        while time.process_time() - started < budget / 3:
            work()
            calls += 1
        best = min(best, (time.process_time() - started) / calls)
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    """Print both accuracy figures (and what was missed) for a model file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model file")
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DATA_DIR", DEFAULT_MNIST)),
        help="folder with MNIST's IDX files (default: $MNIST_DATA_DIR or ../shared/data/mnist)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N MNIST digits")
    parser.add_argument("--photos", type=int, default=300, help="full-size phone photos")
    arguments = parser.parse_args(argv)
    model = OnnxModel(arguments.model, [CPU], 1)

    started = time.perf_counter()
    accuracy, wrong = mnist_upload_accuracy(model, arguments.mnist_dir, arguments.limit)
    seconds = time.perf_counter() - started
    print(
        f"MNIST test digits as inverted upscaled JPEGs: {accuracy:.2%} correct "
        f"({len(wrong)} wrong, {seconds:.1f} s)"
    )

    fonts = machine_fonts()
    if fonts:
        accuracy, misses = font_accuracy(model, fonts)
        print(
            f"digits 0-9 typed in {len(fonts)} fonts: {accuracy:.2%} correct ({len(misses)} wrong)"
        )
        for font, digit, label in misses:
            print(f"  {font}: {digit} read as {label}")
        by_digit = Counter(digit for _, digit, _ in misses)
        print("  misses by digit:", dict(sorted(by_digit.items())))
    else:
        print("no fonts found (fc-list missing or empty)")

    started = time.perf_counter()
    accuracy, photo_misses = phone_photo_accuracy(model, arguments.mnist_dir, arguments.photos)
    seconds = time.perf_counter() - started
    print(
        f"full-size phone photos of MNIST test digits: {accuracy:.2%} correct "
        f"({len(photo_misses)} wrong of {arguments.photos}, {seconds:.1f} s)"
    )
    for index, digit, label in photo_misses:
        print(f"  photo {index}: {digit} read as {label}")

    digit = mnist_test_set(arguments.mnist_dir)[0][0]
    print("CPU time per image, one thread (decode / to_mnist):")
    for name, data in speed_samples(digit).items():
        image = decode(data, MAX_PIXELS)
        decoding = cpu_milliseconds(functools.partial(decode, data, MAX_PIXELS))
        preprocessing = cpu_milliseconds(functools.partial(to_mnist, image))
        print(f"  {name:>15}: {decoding:7.3f} ms / {preprocessing:7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
