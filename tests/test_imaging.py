"""serve.images.decode.decode: every allowed format decodes; every bad upload is a clean 4xx."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from serve.errors import InvalidImage, PayloadTooLarge, ServiceError, UnsupportedMediaType
from serve.images import decode as decode_module
from serve.images.decode import MAX_JPEG_SCANS, declared_pixels, decode, jpeg_scans
from tests.images import encoded, png_declaring

LIMIT = 40_000_000


def sample(mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A small image with some structure (a gradient), so codecs have work to do."""
    gradient = np.add.outer(np.arange(size[1]), np.arange(size[0])).astype(np.uint8) * 3
    return Image.fromarray(gradient).convert(mode)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_allowed_formats_decode_loaded(fmt: str) -> None:
    image = decode(encoded(sample(), fmt), LIMIT)
    assert image.size == (40, 30)
    assert image.format == fmt
    np.asarray(image)  # The pixels are there: decode loaded them.


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "1"])
def test_png_modes_decode(mode: str) -> None:
    assert decode(encoded(sample(mode), "PNG"), LIMIT).size == (40, 30)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("L", (20, 20), value) for value in (10, 200, 90)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = decode(data, LIMIT)
    assert getattr(image, "n_frames", 1) == 3
    assert np.asarray(image.convert("L")).mean() == pytest.approx(10, abs=2)


def test_sixteen_bit_tiff_and_float_tiff_decode() -> None:
    assert decode(encoded(sample("I;16"), "TIFF"), LIMIT).mode.startswith("I;16")
    floats = Image.fromarray(np.linspace(-1, 1, 1200, dtype=np.float32).reshape(30, 40), mode="F")
    assert decode(encoded(floats, "TIFF"), LIMIT).mode == "F"


def test_empty_upload_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode(b"", LIMIT)


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image", bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n", b"GIF89a"],
    ids=["text", "bytes", "png-signature-only", "gif-signature-only"],
)
def test_not_an_image_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImage) as raised:
        decode(data, LIMIT)
    assert raised.value.status == 400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_truncated_images_are_invalid(fmt: str) -> None:
    data = encoded(sample(size=(200, 150)), fmt)
    with pytest.raises(InvalidImage):
        decode(data[: len(data) * 2 // 3], LIMIT)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"/>', "SVG"),
        (b'\xef\xbb\xbf  <?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"%PDF-1.7\n1 0 obj << >> endobj\n", "PDF"),
        (b"<!DOCTYPE html><html><body><img src=x></body></html>", "HTML"),
        (b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 28 28\n", "PostScript"),
    ],
    ids=["svg", "xml-svg-with-bom", "pdf", "html", "postscript"],
)
def test_documents_are_unsupported_media(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=named) as raised:
        decode(data, LIMIT)
    assert raised.value.status == 415


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "PPM", "QOI"])
def test_other_image_formats_are_unsupported_media(fmt: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=fmt):
        decode(encoded(sample(), fmt), LIMIT)


def test_more_pixels_than_the_limit_is_too_large() -> None:
    data = encoded(sample(size=(100, 100)), "PNG")
    assert decode(data, 10_000).size == (100, 100)
    with pytest.raises(PayloadTooLarge, match="10000 pixels") as raised:
        decode(data, 9_999)
    assert raised.value.status == 413


def test_bomb_header_is_refused_before_decoding() -> None:
    # The data behind the header is garbage: decoding it would fail as "truncated"
    # (400), so a 413 shows the header was judged first.
    with pytest.raises(PayloadTooLarge, match="7000x7000"):
        decode(png_declaring(7_000, 7_000, b"garbage"), LIMIT)
    with pytest.raises(PayloadTooLarge):
        decode(png_declaring(20_000, 20_000, b"garbage"), LIMIT)


def test_real_decompression_bomb_is_too_large() -> None:
    row = bytes(1 + 20_000)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(20_000)) + compressor.flush()
    data = png_declaring(20_000, 20_000, idat)
    assert len(data) < 1_000_000, "a small file declaring 400 million pixels"
    with pytest.raises(PayloadTooLarge):
        decode(data, LIMIT)


def test_pillow_bomb_guard_becomes_413_without_a_warning() -> None:
    # Above Pillow's own MAX_IMAGE_PIXELS (warning) and twice it (error), with our limit higher.
    for side in (9_500, 14_000):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(PayloadTooLarge):
                decode(png_declaring(side, side, b"x"), 10**12)


def test_pillow_bomb_guard_quotes_the_service_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="the limit is 40000000") as raised:
        decode(png_declaring(20_000, 20_000, b"garbage"), LIMIT)
    assert "178956970" not in raised.value.description


def test_a_large_jpeg_is_decoded_reduced_in_grey() -> None:
    image = decode(encoded(sample(size=(4032, 3024)), "JPEG"), LIMIT)
    assert image.size == (504, 378) and image.mode == "L"
    assert image.info["full_size"] == (4032, 3024)
    assert decode(encoded(sample(size=(4032, 3024)), "JPEG"), LIMIT, None).size == (4032, 3024)
    assert decode(encoded(sample(size=(300, 200)), "JPEG"), LIMIT).size == (300, 200)


def repeated_scans(copies: int) -> bytes:
    """A small progressive JPEG declaring 2000x2000 (a flat grey: each scan is a few
    hundred bytes) whose last scan is repeated ``copies`` times."""
    data = encoded(Image.new("RGB", (2000, 2000), (90, 120, 150)), "JPEG", progressive=True)
    last_scan = data.rindex(b"\xff\xda")
    return data[:last_scan] + data[last_scan:-2] * copies + data[-2:]


def test_jpeg_scans_are_counted_past_the_header_segments() -> None:
    assert jpeg_scans(encoded(sample(), "JPEG")) == 1
    progressive = encoded(sample(size=(400, 300)), "JPEG", progressive=True)
    assert 5 <= jpeg_scans(progressive) <= 20
    assert jpeg_scans(repeated_scans(50)) == jpeg_scans(repeated_scans(1)) + 49


def test_sos_bytes_inside_header_segments_are_not_scans() -> None:
    """An EXIF thumbnail or a comment may hold 0xFFDA; the header segments are skipped by
    their lengths, so a photo is not refused for them."""
    comment = b"\xff\xda" * (2 * MAX_JPEG_SCANS)
    data = encoded(sample(size=(64, 48)), "JPEG", comment=comment)
    assert comment in data
    assert jpeg_scans(data) == 1
    assert decode(data, LIMIT).size == (64, 48)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0x00, 0xDA, 0xFF]), max_size=300), st.integers(0, 40))
def test_scan_markers_are_counted_as_bytes_count_does(values: list[int], start: int) -> None:
    data = bytes(values)
    assert decode_module._occurrences(data, start, b"\xff\xda") == data.count(b"\xff\xda", start)


def test_a_jpeg_with_too_many_scans_is_refused_fast() -> None:
    data = repeated_scans(5_000)
    started = time.process_time()
    with pytest.raises(InvalidImage, match=f"scans; the limit is {MAX_JPEG_SCANS}") as raised:
        decode(data, LIMIT)
    assert time.process_time() - started < 1.0
    assert raised.value.status == 400
    assert decode(repeated_scans(2), LIMIT).size == (500, 500)
    assert len(data) < 5_000_000


def test_declared_pixels_reads_the_header_only() -> None:
    assert declared_pixels(encoded(sample(size=(64, 48)), "JPEG")) == 64 * 48
    assert declared_pixels(png_declaring(7_000, 7_000, b"garbage")) == 49_000_000
    with pytest.raises(InvalidImage):
        declared_pixels(b"")
    with pytest.raises(InvalidImage):
        declared_pixels(b"hello, this is not an image")
    with pytest.raises(UnsupportedMediaType):
        declared_pixels(b"%PDF-1.7\n")
    with pytest.raises(UnsupportedMediaType):
        declared_pixels(encoded(sample(), "PCX"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_service_errors(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # A leaked warning would be log noise: fail on it.
        with contextlib.suppress(ServiceError):
            decode(data, LIMIT)


VALID = {
    fmt: encoded(sample(size=(64, 48)), fmt)
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(VALID)),
    st.floats(min_value=0.0, max_value=1.0),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4),
)
def test_truncated_or_corrupted_valid_images_only_raise_service_errors(
    fmt: str, keep: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(VALID[fmt][: max(1, int(len(VALID[fmt]) * keep))])
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # A leaked warning would be log noise: fail on it.
        try:
            image = decode(bytes(data), LIMIT)
        except ServiceError:
            return
    assert image.size[0] * image.size[1] <= LIMIT


def test_every_decoder_is_loaded_before_the_first_request(fake_models: Path) -> None:
    """Pillow imports its format plugins on the first decode; the app does it at start-up,
    so that the first upload a worker gets is not tens of ms slower than the rest."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from serve.app import create_app\n"
        "from serve.settings import Settings\n"
        "create_app(Settings(model_dir=Path(sys.argv[1])))\n"
        "print(' '.join(sorted(name for name in sys.modules if name.endswith('ImagePlugin'))))\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", script, str(fake_models)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for plugin in ("PngImagePlugin", "JpegImagePlugin", "TiffImagePlugin", "WebPImagePlugin"):
        assert f"PIL.{plugin}" in printed
