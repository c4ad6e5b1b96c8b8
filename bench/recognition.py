"""Recognition through the serving preprocessing: how often the CNN labels real-looking
uploads right.

Two figures, each a full round trip through ``serve.images.decode.decode`` and
``serve.images.normalise.to_mnist``:
- MNIST's 10,000 test digits, each inverted (black on white), upscaled to 112..280 px with a
  white margin and sent as a JPEG;
- digits 0-9 typed in every TTF/OTF font ``fc-list`` finds, rendered black on white.

Run: ``python -m bench.recognition [--model onnx_models/cnn.onnx] [--limit N]``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from serve.images.decode import decode
from serve.images.normalise import to_mnist
from serve.model.runtime import CPU, OnnxModel

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "onnx_models" / "cnn.onnx"
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
MAX_PIXELS = 40_000_000
FONT_SIZE = 96
FONT_CANVAS = 160

log = logging.getLogger("bench.recognition")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a uint8 array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def mnist_test_set(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test images ``[10000, 28, 28]`` and labels, from IDX files (``.gz`` or raw)."""

    def find(stem: str) -> Path:
        packed = mnist_dir / f"{stem}.gz"
        return packed if packed.exists() else mnist_dir / stem

    images = read_idx(find("t10k-images-idx3-ubyte"))
    labels = read_idx(find("t10k-labels-idx1-ubyte"))
    return images, labels


def mnist_as_upload(digit: np.ndarray, index: int) -> bytes:
    """One MNIST digit as a user would send it: inverted to black on white, upscaled to a
    side of 112..280 px (varying with ``index``), with a white margin, as a JPEG."""
    side = 112 + (index * 37) % 169
    margin = side // 8
    upscaled = Image.fromarray(255 - digit, mode="L").resize(
        (side - 2 * margin, side - 2 * margin), Image.Resampling.BICUBIC
    )
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(upscaled, (margin, margin))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def machine_fonts() -> list[Path]:
    """Every TTF/OTF font file ``fc-list`` reports, sorted; empty without fontconfig."""
    if shutil.which("fc-list") is None:
        return []
    listing = subprocess.run(
        ["fc-list", ":", "file"], capture_output=True, text=True, check=False
    ).stdout
    paths = {line.split(":")[0].strip() for line in listing.splitlines()}
    return sorted(Path(path) for path in paths if path.lower().endswith((".ttf", ".otf")))


def render_digit(font_path: Path, digit: int, size: int = FONT_SIZE) -> bytes:
    """``digit`` typed in the font, black on white, centred in a square PNG."""
    font = ImageFont.truetype(str(font_path), size)
    canvas = Image.new("L", (FONT_CANVAS * size // FONT_SIZE,) * 2, 255)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    position = (
        (canvas.width - (right - left)) / 2 - left,
        (canvas.height - (bottom - top)) / 2 - top,
    )
    draw.text(position, str(digit), fill=0, font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def preprocess(uploads: Iterator[bytes]) -> np.ndarray:
    """decode + to_mnist of each upload, stacked as ``[n, 28, 28]``."""
    return np.stack([to_mnist(decode(data, MAX_PIXELS)) for data in uploads])


def classify(model: OnnxModel, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Predicted labels of ``[n, 28, 28]`` images, batch by batch."""
    return np.concatenate(
        [
            model.predict(images[start : start + batch]).argmax(axis=1)
            for start in range(0, len(images), batch)
        ]
    )


def mnist_upload_accuracy(
    model: OnnxModel, mnist_dir: Path, limit: int | None = None
) -> tuple[float, np.ndarray]:
    """Accuracy on MNIST's test digits sent as inverted, upscaled JPEGs; and the indices
    it got wrong."""
    images, labels = mnist_test_set(mnist_dir)
    count = len(images) if limit is None else min(limit, len(images))
    inputs = preprocess(mnist_as_upload(images[index], index) for index in range(count))
    wrong = np.flatnonzero(classify(model, inputs) != labels[:count])
    return 1 - len(wrong) / count, wrong


def font_accuracy(model: OnnxModel, fonts: list[Path]) -> tuple[float, list[tuple[str, int, int]]]:
    """Accuracy on digits 0-9 typed in each font; and the (font, digit, predicted) misses."""
    cases = [(font, digit) for font in fonts for digit in range(10)]
    inputs = preprocess(render_digit(font, digit) for font, digit in cases)
    predicted = classify(model, inputs)
    misses = [
        (font.name, digit, int(label))
        for (font, digit), label in zip(cases, predicted, strict=True)
        if label != digit
    ]
    return 1 - len(misses) / len(cases), misses


def speed_samples(digit: np.ndarray) -> dict[str, bytes]:
    """One MNIST digit as a 28x28 PNG, a 300x300 black-on-white JPEG and a 12 MP photo."""
    inverted = Image.fromarray(255 - digit, mode="L")
    samples = {
        "28x28 PNG": (Image.fromarray(digit, mode="L"), "PNG"),
        "300x300 JPEG": (inverted.resize((300, 300), Image.Resampling.BICUBIC), "JPEG"),
        "4000x3000 JPEG": (inverted.resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG"),
    }
    encoded = {}
    for name, (image, fmt) in samples.items():
        buffer = io.BytesIO()
        image.convert("RGB" if fmt == "JPEG" else "L").save(buffer, format=fmt, quality=85)
        encoded[name] = buffer.getvalue()
    return encoded


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
