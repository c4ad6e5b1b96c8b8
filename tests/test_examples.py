"""The sample images in examples/: each is read as the digit its name says, by both committed
models, through the app; and examples/make_examples.py makes them again."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import falcon.testing
import numpy as np
import pytest
from PIL import Image

from serve.app import create_app
from serve.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}
IMAGES = sorted(path for path in EXAMPLES.iterdir() if path.suffix in CONTENT_TYPES)


def digit_in_name(path: Path) -> int:
    """``scan-two.png``, ``three-28x28.png`` -> 2, 3: the one word of the file name that is
    a digit's name."""
    (digit,) = [word for word in path.stem.split("-") if word in DIGITS]
    return DIGITS.index(digit)


@pytest.fixture(scope="module")
def client() -> falcon.testing.TestClient:
    """The app over the committed models, on CPU, one thread."""
    settings = Settings(model_dir=ROOT / "onnx_models", providers="cpu", intra_op_threads=1)
    return falcon.testing.TestClient(create_app(settings))


def test_there_is_one_example_of_each_kind() -> None:
    names = {path.name for path in IMAGES}
    assert {"seven.png", "scan-two.png", "photo-four.jpg", "three-28x28.png"} <= names


@pytest.mark.parametrize("model", ["cnn", "softmax"])
@pytest.mark.parametrize("path", IMAGES, ids=[path.name for path in IMAGES])
def test_example_is_read_as_its_digit(
    client: falcon.testing.TestClient, path: Path, model: str
) -> None:
    result = client.simulate_post(
        "/predict",
        params={"model": model},
        body=path.read_bytes(),
        headers={"Content-Type": CONTENT_TYPES[path.suffix]},
    )
    assert result.status_code == 200, result.text
    assert result.json["label"] == digit_in_name(path)
    assert result.json["confidence"] > 0.9


def test_photo_must_be_turned_by_its_exif_tag() -> None:
    with Image.open(EXAMPLES / "photo-four.jpg") as photo:
        assert photo.format == "JPEG"
        assert photo.getexif()[0x0112] == 6
        assert photo.size == (600, 450)


def load_generator() -> ModuleType:
    """examples/make_examples.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exif_tag_is_what_makes_the_photo_readable(client: falcon.testing.TestClient) -> None:
    with Image.open(EXAMPLES / "photo-four.jpg") as photo:
        stored = io.BytesIO()
        photo.save(stored, "JPEG", quality=95)  # the pixels as stored, no EXIF
    for model in ["cnn", "softmax"]:
        result = client.simulate_post(
            "/predict",
            params={"model": model},
            body=stored.getvalue(),
            headers={"Content-Type": "image/jpeg"},
        )
        assert result.status_code == 200, result.text
        assert result.json["label"] != 4 or result.json["confidence"] < 0.9, model


def test_generator_makes_the_committed_images(tmp_path: Path) -> None:
    generator = load_generator()
    assert set(generator.EXAMPLES) == {path.name for path in IMAGES}
    for name in generator.EXAMPLES:
        generator.save(generator.make(name), tmp_path / name)
        with Image.open(tmp_path / name) as made, Image.open(EXAMPLES / name) as committed:
            assert made.size == committed.size and made.mode == committed.mode, name
            difference = np.abs(
                np.asarray(made, dtype=np.int16) - np.asarray(committed, dtype=np.int16)
            )
        # PNG is lossless; a JPEG encoder of another version may round a little differently.
        assert difference.mean() < (1.0 if name.endswith(".jpg") else 1e-9), name


def test_generator_is_reproducible() -> None:
    generator = load_generator()
    for name in generator.EXAMPLES:
        first, second = generator.make(name), generator.make(name)
        assert first.tobytes() == second.tobytes(), name
