"""Draw the sample digit images in examples/ from scratch, as pen strokes.

One of each kind people send: a canvas drawing, a scan, an EXIF-rotated phone photo and a
28x28 MNIST-style image. Seeded, so a second run writes the same files.

    python examples/make_examples.py [--output DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SEED = 12
EXIF_ORIENTATION = 0x0112
ROTATE_90_CLOCKWISE_TO_VIEW = 6
#: Strokes are drawn this many times larger, then box-reduced: anti-aliased edges.
SUPERSAMPLE = 4

Point = tuple[float, float]

#: Each digit as pen strokes through hand-picked points, (x, y) in a unit box, y down. A
#: stroke is one smooth curve; a corner is where two strokes meet.
STROKES: dict[int, list[list[Point]]] = {
    2: [
        [(0.24, 0.30), (0.36, 0.16), (0.56, 0.12), (0.72, 0.22), (0.72, 0.40), (0.56, 0.58)],
        [(0.56, 0.58), (0.40, 0.72), (0.22, 0.87)],
        [(0.22, 0.87), (0.50, 0.85), (0.80, 0.86)],
    ],
    3: [
        [(0.26, 0.22), (0.44, 0.12), (0.64, 0.14), (0.72, 0.28), (0.62, 0.42), (0.44, 0.48)],
        [(0.44, 0.48), (0.64, 0.52), (0.76, 0.66), (0.70, 0.82), (0.50, 0.90), (0.26, 0.82)],
    ],
    4: [
        [(0.30, 0.12), (0.26, 0.36), (0.22, 0.58)],
        [(0.22, 0.58), (0.50, 0.57), (0.82, 0.55)],
        [(0.68, 0.10), (0.67, 0.50), (0.65, 0.90)],
    ],
    7: [
        [(0.18, 0.20), (0.50, 0.17), (0.80, 0.16)],
        [(0.80, 0.16), (0.66, 0.40), (0.54, 0.64), (0.46, 0.88)],
    ],
}


def catmull_rom(points: np.ndarray, step: float) -> np.ndarray:
    """A smooth curve through ``points`` ``[n, 2]``, sampled about every ``step`` units."""
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    pieces = []
    for index in range(len(points) - 1):
        p0, p1, p2, p3 = padded[index : index + 4]
        count = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step)))
        t = np.linspace(0.0, 1.0, count, endpoint=False)[:, None]
        pieces.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    pieces.append(points[-1:])
    return np.vstack(pieces)


def ink(
    digit: int, size: int, box: tuple[float, float, float], pen: float, rng: np.random.Generator
) -> np.ndarray:
    """``digit`` drawn on a ``size`` x ``size`` canvas as ink coverage in [0, 1]: the unit box
    mapped to ``box`` (left, top, side, in pixels), a round pen ``pen`` pixels wide whose
    width wavers a little along the stroke, every point jittered by ``rng``, the hand."""
    scale = SUPERSAMPLE
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, side = box
    for stroke in STROKES[digit]:
        points = np.array(stroke) + rng.normal(0.0, 0.008, size=(len(stroke), 2))
        points = (points * side + (left, top)) * scale
        curve = catmull_rom(points, step=scale * 0.5)
        phase, wobble = rng.uniform(0, 2 * np.pi), rng.uniform(2.0, 4.0)
        along = np.linspace(0.0, 1.0, len(curve))
        widths = pen * scale * (1.0 + 0.12 * np.sin(phase + wobble * np.pi * along))
        for (x, y), width in zip(curve, widths, strict=True):
            radius = width / 2
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    reduced = canvas.reduce(scale)
    return np.asarray(reduced, dtype=np.float32) / 255.0


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a ``cells`` x ``cells`` random grid, upscaled."""
    grid = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    blurred = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(blurred, dtype=np.float32) / 127.5 - 1.0


def drawn(rng: np.random.Generator) -> Image.Image:
    """Like the page's canvas export: 280x280, #111 strokes on white."""
    coverage = ink(7, 280, (30.0, 30.0, 220.0), pen=20.0, rng=rng)
    grey = 255.0 - coverage * (255.0 - 0x11)
    pixels = np.repeat(grey[..., None], 3, axis=2)
    return Image.fromarray(pixels.round().astype(np.uint8), "RGB")


def scan(rng: np.random.Generator) -> Image.Image:
    """A scanned page: 360x440 grey, paper grain, brighter to one side, faint ruled lines,
    a slightly tilted pencil-grey digit."""
    height, width = 440, 360
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[100:340, 60:300] = ink(2, 240, (20.0, 20.0, 200.0), pen=14.0, rng=rng)
    tilted = Image.fromarray((coverage * 255).astype(np.uint8)).rotate(
        -5, Image.Resampling.BILINEAR
    )
    coverage = np.asarray(tilted, dtype=np.float32) / 255.0
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    paper = 188.0 + 22.0 * (columns / width) - 10.0 * (rows / height)
    paper += 7.0 * smooth_noise(rng, height, width, 6) + rng.normal(0.0, 5.0, size=(height, width))
    ruled = (rows.astype(np.int32) % 56 == 40) | (rows.astype(np.int32) % 56 == 41)
    paper -= 18.0 * ruled
    grey = paper * (1.0 - coverage) + 70.0 * coverage
    return Image.fromarray(np.clip(grey, 0, 255).round().astype(np.uint8), "L")


def photo(rng: np.random.Generator) -> Image.Image:
    """A phone photo of paper: 450x600 upright, warm light falling off to one corner and a
    vignette, soft focus and sensor noise; returned as the camera stores it, turned 90
    degrees, for the EXIF orientation tag to put right."""
    height, width = 600, 450
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[170:430, 95:355] = ink(4, 260, (20.0, 20.0, 220.0), pen=18.0, rng=rng)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.5 * (rows / height) * (columns / width)
    light -= 0.3 * (((rows - height / 2) / height) ** 2 + ((columns - width / 2) / width) ** 2)
    light += 0.03 * smooth_noise(rng, height, width, 5)
    paper = np.array([235.0, 222.0, 200.0])
    pen = np.array([40.0, 45.0, 80.0])
    colour = paper * (1.0 - coverage[..., None]) + pen * coverage[..., None]
    colour = colour * light[..., None] + rng.normal(0.0, 4.0, size=(height, width, 3))
    upright = Image.fromarray(np.clip(colour, 0, 255).round().astype(np.uint8), "RGB")
    upright = upright.filter(ImageFilter.GaussianBlur(1.5))
    return upright.transpose(Image.Transpose.ROTATE_90)


def mnist_style(rng: np.random.Generator) -> Image.Image:
    """Made the way MNIST digits were: drawn large, the ink fitted into 20x20 keeping its
    aspect ratio, placed in 28x28 white on black with its centre of mass at the centre."""
    coverage = ink(3, 280, (20.0, 20.0, 240.0), pen=26.0, rng=rng)
    rows, columns = np.nonzero(coverage > 0)
    patch = coverage[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    factor = 20.0 / max(patch.shape)
    size = (max(1, round(patch.shape[1] * factor)), max(1, round(patch.shape[0] * factor)))
    small = Image.fromarray(patch).resize(size, Image.Resampling.LANCZOS)
    box = np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)
    total = box.sum()
    mass_row = (box.sum(axis=1) * np.arange(box.shape[0])).sum() / total
    mass_column = (box.sum(axis=0) * np.arange(box.shape[1])).sum() / total
    top, left = round(13.5 - mass_row), round(13.5 - mass_column)
    frame = np.zeros((28, 28), dtype=np.float32)
    frame[top : top + box.shape[0], left : left + box.shape[1]] = box
    return Image.fromarray((frame * 255).round().astype(np.uint8), "L")


#: File name -> how it is made.
EXAMPLES: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "seven.png": drawn,
    "scan-two.png": scan,
    "photo-four.jpg": photo,
    "three-28x28.png": mnist_style,
}


def make(name: str) -> Image.Image:
    """The example called ``name``."""
    index = list(EXAMPLES).index(name)
    return EXAMPLES[name](np.random.default_rng([SEED, 100 + index]))


def save(image: Image.Image, path: Path) -> None:
    """Write ``image``; a JPEG gets the EXIF tag saying it must be turned to be viewed."""
    if path.suffix == ".jpg":
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = ROTATE_90_CLOCKWISE_TO_VIEW
        image.save(path, quality=88, exif=exif)
    else:
        image.save(path, optimize=True)


def main() -> None:
    """Write every example and print its name and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "examples")
    arguments = parser.parse_args()
    for name in EXAMPLES:
        image = make(name)
        save(image, arguments.output / name)
        print(f"{name}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
