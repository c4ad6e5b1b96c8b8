"""serve.images.normalise against generated images of every kind people send.

Each scenario draws a digit shape (a 7 or a 0, with ImageDraw), dresses it up as a canvas
export, a phone photo, ruled paper, a scan with dust and so on, and checks the 28x28
produced: the MNIST form (values, box, centre of mass, polarity) and its likeness to the
same shape drawn clean.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve.errors import BlankImage
from serve.images.decode import decode
from serve.images.normalise import to_mnist, to_png_data_url
from serve.images.strokes import stroke_width
from tests.images import encoded
from tests.recognition_sets import mnist_test_set

Box = tuple[float, float, float, float]


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: Box, width: int, fill: int | tuple[int, ...]
) -> None:
    """Draw a ``"7"``, a ``"0"`` or a ``"1"`` filling ``box`` (left, top, right, bottom)."""
    left, top, right, bottom = box
    if shape == "7":
        points = [(left, top), (right, top), (left + 0.35 * (right - left), bottom)]
        draw.line(points, fill=fill, width=width, joint="curve")
    elif shape == "0":
        draw.ellipse(box, outline=fill, width=width)
    else:
        middle = (left + right) / 2
        draw.line([(middle, top), (middle, bottom)], fill=fill, width=width)


def drawn(
    shape: str = "7",
    size: tuple[int, int] = (200, 200),
    box: Box | None = None,
    width: int = 12,
    ink: int = 0,
    paper: int = 255,
) -> Image.Image:
    """A grey image of the shape, dark on light by default, in the middle 60% unless
    ``box`` says where."""
    image = Image.new("L", size, paper)
    frame = box or (0.2 * size[0], 0.2 * size[1], 0.8 * size[0], 0.8 * size[1])
    draw_shape(ImageDraw.Draw(image), shape, frame, width, ink)
    return image


def ink_mask(
    size: tuple[int, int], shape: str = "7", box: Box | None = None, width: int = 12
) -> np.ndarray:
    """The shape's coverage in [0, 1] (1 = ink), as a float array."""
    return 1.0 - np.asarray(drawn(shape, size, box, width), dtype=np.float64) / 255.0


def through_jpeg(image: Image.Image, quality: int = 85) -> Image.Image:
    """Round-trip through JPEG, as uploads usually are."""
    return decode(encoded(image, "JPEG", quality=quality), 10**8)


def assert_mnist_form(digit: np.ndarray) -> None:
    """The 28x28 array is what MNIST looks like: float32 in [0, 1], white ink on a black
    frame, ink inside a 20x20 box, centre of mass within a pixel of (14, 14) (unless, as
    for MNIST's own 7s, that would push the ink out of the frame)."""
    assert digit.shape == (28, 28)
    assert digit.dtype == np.float32
    assert np.isfinite(digit).all()
    assert digit.min() >= 0.0 and digit.max() <= 1.0
    assert digit.max() >= 0.9, "the strokes should be bright"
    rows = np.flatnonzero(digit.max(axis=1) > 0.05)
    columns = np.flatnonzero(digit.max(axis=0) > 0.05)
    assert rows[-1] - rows[0] + 1 <= 20 and columns[-1] - columns[0] + 1 <= 20
    assert max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 >= 18, "fills the 20x20 box"
    ring = np.concatenate([digit[0], digit[-1], digit[:, 0], digit[:, -1]])
    assert ring.mean() < 0.1, "white on black: the frame is background"
    total = digit.sum()
    centre_row = (digit.sum(axis=1) * np.arange(28)).sum() / total
    centre_column = (digit.sum(axis=0) * np.arange(28)).sum() / total
    assert abs(centre_row - 14) <= 1.0 or rows[0] == 0 or rows[-1] == 27
    assert abs(centre_column - 14) <= 1.0 or columns[0] == 0 or columns[-1] == 27


def blurred(digit: np.ndarray) -> np.ndarray:
    """3x3 mean of a 2-D array (so that a one-pixel shift of a thin stroke still matches)."""
    padded = np.pad(digit, 1)
    return np.sum(
        [
            padded[row : row + digit.shape[0], column : column + digit.shape[1]]
            for row in range(3)
            for column in range(3)
        ],
        axis=0,
    )


def likeness(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two 28x28 arrays, blurred."""
    return float(np.corrcoef(blurred(first).ravel(), blurred(second).ravel())[0, 1])


def assert_reads_as(
    image: Image.Image, clean: Image.Image | None = None, least: float = 0.9
) -> np.ndarray:
    """to_mnist of ``image`` has the MNIST form and looks like to_mnist of ``clean`` (the
    same digit drawn clean, black on white; by default ``drawn()``)."""
    digit = to_mnist(image)
    assert_mnist_form(digit)
    assert likeness(digit, to_mnist(clean or drawn())) >= least
    return digit


# Polarity, modes and formats.


def test_mnist_digits_come_out_nearly_unchanged(mnist_dir: Path) -> None:
    images, _ = mnist_test_set(mnist_dir)
    scores = []
    for original in images[:100]:
        digit = to_mnist(Image.fromarray(original))
        assert_mnist_form(digit)
        scores.append(likeness(digit, original / 255.0))
    # Only the few with hair-thin strokes change (they are thickened).
    assert np.median(scores) > 0.99
    assert min(scores) > 0.7


def test_black_on_white_and_white_on_black_give_the_same_digit() -> None:
    dark_on_light = to_mnist(drawn())
    light_on_dark = to_mnist(drawn(ink=255, paper=0))
    assert likeness(dark_on_light, light_on_dark) > 0.98


def test_grey_ink_on_grey_paper_is_stretched_to_full_contrast() -> None:
    assert_reads_as(drawn(ink=90, paper=160))


@pytest.mark.parametrize(
    "mode", ["1", "L", "RGB", "CMYK", "YCbCr", "HSV", "LAB", "P", "I", "F", "I;16"]
)
def test_every_mode_reads_as_the_digit(mode: str) -> None:
    image = drawn()
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image, np.uint16) * 257).astype(np.uint16))
    elif mode == "LAB":
        image = image.convert("RGB").convert("LAB")
    else:
        image = image.convert(mode)
    assert image.mode == mode
    assert_reads_as(image)


def test_sixteen_bit_grey_with_twelve_bit_values() -> None:
    values = (np.asarray(drawn(), np.float64) / 255 * 4095).astype(np.uint16)
    assert_reads_as(Image.fromarray(values))


def test_faint_noise_on_a_uniform_sixteen_bit_image_is_blank() -> None:
    rng = np.random.default_rng(2)
    values = (30_000 + rng.normal(0, 40, (100, 100))).astype(np.uint16)
    with pytest.raises(BlankImage):
        to_mnist(Image.fromarray(values))


def test_float_image_of_any_value_range() -> None:
    values = np.asarray(drawn(), np.float32) * -3.5e6 + 7.0
    assert_reads_as(Image.fromarray(values, mode="F"))


def test_coloured_ink_on_coloured_paper() -> None:
    image = Image.new("RGB", (200, 200), (250, 240, 200))
    draw_shape(ImageDraw.Draw(image), "7", (40, 40, 160, 160), 12, (20, 40, 160))
    assert_reads_as(image)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_every_allowed_format_round_trips(fmt: str) -> None:
    assert_reads_as(decode(encoded(drawn().convert("RGB"), fmt), 10**7))


# Alpha.


def canvas_export(stroke: tuple[int, int, int], size: tuple[int, int] = (280, 280)) -> Image.Image:
    """What a browser canvas gives: strokes on fully transparent (0, 0, 0, 0) pixels."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw_shape(ImageDraw.Draw(image), "7", (56, 56, 224, 224), 16, (*stroke, 255))
    return image


CANVAS_CLEAN = drawn(size=(280, 280), width=16)


def test_canvas_export_dark_strokes_on_transparent() -> None:
    assert_reads_as(canvas_export((0, 0, 0)), CANVAS_CLEAN)


def test_canvas_export_survives_png_encoding() -> None:
    assert_reads_as(decode(encoded(canvas_export((10, 10, 10)), "PNG"), 10**7), CANVAS_CLEAN)


def test_canvas_export_light_strokes_on_transparent() -> None:
    assert_reads_as(canvas_export((255, 255, 255)), CANVAS_CLEAN)


def test_grey_with_alpha_and_palette_with_transparency() -> None:
    assert_reads_as(canvas_export((0, 0, 0)).convert("LA"), CANVAS_CLEAN)
    palette = canvas_export((0, 0, 0)).quantize(colors=4)
    assert palette.mode == "P"
    assert_reads_as(palette, CANVAS_CLEAN)


def test_transparent_hole_in_opaque_paper_is_background() -> None:
    image = drawn().convert("RGBA")
    ImageDraw.Draw(image).rectangle((0, 0, 30, 30), fill=(0, 0, 0, 0))
    assert_reads_as(image)


# Orientation.


def test_exif_orientation_is_applied() -> None:
    upright = drawn(size=(240, 180))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "Rotate 90 CW to view": undoes the ROTATE_90 (counter-clockwise) above.
    photo = decode(encoded(stored, "JPEG", exif=exif.tobytes(), quality=95), 10**7)
    assert likeness(to_mnist(photo), to_mnist(upright)) > 0.95
    assert likeness(to_mnist(stored), to_mnist(upright)) < 0.7


# Photos, paper and scans.


def phone_photo(seed: int = 0) -> Image.Image:
    """Paper under uneven light (bright corner to dim corner), sensor noise, dark ink, as a
    JPEG; 640x480."""
    rng = np.random.default_rng(seed)
    height, width = 480, 640
    rows, columns = np.mgrid[0:height, 0:width]
    light = 0.95 - 0.5 * (rows / height + columns / width) / 2
    ink = ink_mask((width, height), box=(220, 140, 420, 340), width=14)
    pixels = light * (1 - 0.8 * ink) + rng.normal(0, 0.03, (height, width))
    image = Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8)).convert("RGB")
    return through_jpeg(image, quality=80)


PHOTO_CLEAN = drawn(size=(640, 480), box=(220, 140, 420, 340), width=14)


def test_phone_photo_with_uneven_light_and_noise() -> None:
    assert_reads_as(phone_photo(), PHOTO_CLEAN)


def test_vignette_darker_than_the_ink_contrast_does_not_become_ink() -> None:
    height, width = 480, 640
    rows, columns = np.mgrid[0:height, 0:width]
    distance = np.hypot((rows - height / 2) / height, (columns - width / 2) / width)
    light = 0.95 - 1.2 * distance**2
    ink = ink_mask((width, height), box=(220, 140, 420, 340), width=14)
    pixels = light * (1 - 0.6 * ink)
    assert light.min() < 0.95 * 0.4, "the corners are darker than the ink"
    assert_reads_as(Image.fromarray((pixels * 255).astype(np.uint8)), PHOTO_CLEAN)


def ruled_paper(shape: str = "7") -> Image.Image:
    """Notebook paper: pale blue lines every 40 px and a red margin line; a dark blue digit
    written across two of the lines."""
    image = Image.new("RGB", (400, 400), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    for row in range(20, 400, 40):
        draw.line([(0, row), (400, row)], fill=(140, 170, 220), width=2)
    draw.line([(60, 0), (60, 400)], fill=(220, 120, 120), width=2)
    draw_shape(draw, shape, (150, 110, 290, 290), 10, (20, 30, 110))
    return through_jpeg(image)


@pytest.mark.parametrize("shape", ["7", "0"])
def test_ruled_notebook_lines_are_removed(shape: str) -> None:
    assert_reads_as(ruled_paper(shape), drawn(shape, (400, 400), (150, 110, 290, 290), 10))


def test_empty_ruled_paper_is_blank() -> None:
    image = Image.new("L", (300, 300), 250)
    draw = ImageDraw.Draw(image)
    for row in range(20, 300, 40):
        draw.line([(0, row), (300, row)], fill=120, width=2)
    with pytest.raises(BlankImage):
        to_mnist(image)


def test_a_lone_vertical_stroke_is_a_one_not_a_ruled_line() -> None:
    digit = to_mnist(drawn("1", box=(90, 10, 110, 190), width=10))
    assert digit.max() == 1.0
    columns = np.flatnonzero(digit.max(axis=0) > 0.05)
    assert columns.size <= 8 and abs(columns.mean() - 14) <= 1.5


def test_scanner_dust_and_specks_away_from_the_digit_are_dropped() -> None:
    clean = drawn(size=(300, 300), box=(90, 80, 210, 220))
    image = clean.copy()
    draw = ImageDraw.Draw(image)
    for left, top in [(10, 10), (270, 30), (20, 260), (280, 280), (150, 12), (12, 150), (250, 250)]:
        draw.ellipse((left, top, left + 4, top + 4), fill=30)
    assert_reads_as(image, clean, least=0.99)


def test_thick_marker_strokes_are_thinned_and_keep_the_hole() -> None:
    # Stroke normalisation changes the widths on purpose, hence the lower likeness.
    digit = assert_reads_as(drawn("0", width=36), drawn("0", width=20), least=0.75)
    assert digit[14, 14] == 0.0, "the hole of the 0 stays open"
    assert stroke_width(digit > 0.5) <= 3.5, "36/120 of the box would be 6 px"


def test_hair_thin_strokes_are_thickened() -> None:
    digit = assert_reads_as(drawn("0", size=(600, 600), width=2), drawn("0", width=12), least=0.75)
    assert stroke_width(digit > 0.5) >= 1.2, "2/360 of the box would be 0.1 px"


def test_small_digit_in_a_large_frame() -> None:
    image = drawn(size=(1600, 1200), box=(1000, 300, 1040, 350), width=5)
    assert_reads_as(image, drawn(size=(160, 200), box=(40, 50, 120, 150), width=10))


@pytest.mark.parametrize(
    ("box", "width", "decoded_again"),
    [((500, 300, 700, 600), 16, False), ((600, 400, 650, 475), 6, True)],
)
def test_only_a_small_digit_in_a_reduced_photo_is_decoded_again(
    box: Box, width: int, decoded_again: bool
) -> None:
    """A 1280x960 JPEG is decoded at 320x240: a 7 spanning 75 px there (over twice the
    20x20 box) is read as it is; one spanning 19 px is read again from a sharper decode."""
    data = encoded(drawn(size=(1280, 960), box=box, width=width), "JPEG", quality=90)
    sides: list[int] = []

    def redecode(side: int) -> Image.Image:
        sides.append(side)
        return decode(data, 10**8, side)

    image = decode(data, 10**8)
    assert image.size == (320, 240)
    clean = drawn(size=(400, 500), box=(100, 100, 300, 400), width=16)
    assert_reads_as(image, clean)
    digit = to_mnist(image, redecode)
    assert_mnist_form(digit)
    assert likeness(digit, to_mnist(clean)) >= 0.9
    assert bool(sides) == decoded_again


def test_tiny_images_are_scaled_up() -> None:
    assert_reads_as(drawn(size=(12, 12), box=(2, 2, 10, 10), width=1), least=0.6)


def test_digit_touching_the_image_edges() -> None:
    assert_reads_as(drawn(size=(100, 100), box=(3, 3, 96, 96), width=6), drawn(width=8))


# No ink.


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (200, 200), 255),
        Image.new("L", (200, 200), 0),
        Image.new("RGB", (64, 48), (120, 180, 40)),
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
        Image.new("1", (1, 1)),
        Image.new("F", (30, 30), float("nan")),
    ],
    ids=["white", "black", "uniform-colour", "transparent", "1x1", "nan"],
)
def test_blank_images_raise_blank_image(image: Image.Image) -> None:
    with pytest.raises(BlankImage):
        to_mnist(image)


def test_faint_noise_alone_is_blank() -> None:
    rng = np.random.default_rng(1)
    pixels = np.clip(235 + rng.normal(0, 4, (300, 300)), 0, 255).astype(np.uint8)
    with pytest.raises(BlankImage):
        to_mnist(through_jpeg(Image.fromarray(pixels)))


def test_specks_alone_are_blank() -> None:
    image = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(image).point([(40, 40), (300, 120), (200, 350)], fill=0)
    with pytest.raises(BlankImage):
        to_mnist(image)


# The debug hook.


def test_png_data_url_holds_the_28x28_the_model_saw() -> None:
    digit = to_mnist(drawn())
    url = to_png_data_url(digit)
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (28, 28) and decoded.mode == "L"
    assert np.abs(np.asarray(decoded, np.float32) / 255 - digit).max() <= 1 / 255
