"""MNIST loading in pure numpy: IDX files (.gz or raw) or a Keras-style ``mnist.npz``.

No TensorFlow here, so tests and the export side can load MNIST quickly.
Search order: an explicit folder (``--data-dir``), then ``MNIST_DATA_DIR``, then the Keras
cache (``~/.keras/datasets/mnist.npz``, or ``$KERAS_HOME/datasets``), downloaded there the way
Keras does it when nothing is found.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import struct
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SIDE = 28
NUM_CLASSES = 10
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

#: The four IDX files, by role; each may also be present gzip-compressed (``.gz``).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NPZ_NAME = "mnist.npz"
#: Where and what Keras downloads (keras.datasets.mnist.load_data).
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


class MnistDataError(Exception):
    """MNIST is missing, corrupt, truncated or inconsistent; the message says which file."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Images ``[n, 28, 28]`` uint8 (white on black) and labels ``[n]`` uint8."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int) -> Split:
        """The first ``count`` examples."""
        return Split(self.images[:count], self.labels[:count])


@dataclasses.dataclass(frozen=True)
class Mnist:
    """The training and test splits, where they came from and the training data's checksum."""

    train: Split
    test: Split
    source: Path

    @property
    def train_sha256(self) -> str:
        """SHA-256 of the decompressed training IDX files, images then labels."""
        return idx_sha256(self.train)


def missing_data_message(directory: Path | None = None) -> str:
    """Say exactly which files to put where."""
    names = ", ".join(f"{name}.gz" for name in IDX_FILES.values())
    where = directory or keras_cache_dir()
    return (
        f"MNIST not found. Put the four IDX files ({names}; .gz or uncompressed) in {where}, "
        f"or Keras's {NPZ_NAME} ({KERAS_URL}) in {keras_cache_dir()}, "
        "and pass --data-dir or set MNIST_DATA_DIR to their folder"
    )


def keras_cache_dir() -> Path:
    """The folder Keras downloads datasets to."""
    keras_home = os.environ.get("KERAS_HOME")
    base = Path(keras_home) if keras_home else Path.home() / ".keras"
    return base / "datasets"


def parse_idx(data: bytes, name: str, magic: int) -> np.ndarray:
    """Parse the bytes of one IDX file of unsigned bytes; MnistDataError when they are not one."""
    if len(data) < 4:
        raise MnistDataError(f"{name}: {len(data)} bytes, too short for an IDX header")
    found_magic = struct.unpack(">I", data[:4])[0]
    if found_magic != magic:
        raise MnistDataError(f"{name}: magic number {found_magic}, expected {magic}")
    dimensions = data[3]
    header_size = 4 + 4 * dimensions
    if len(data) < header_size:
        raise MnistDataError(f"{name}: truncated header ({len(data)} bytes)")
    shape = struct.unpack(f">{dimensions}I", data[4:header_size])
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(data) - header_size
    if body < expected:
        raise MnistDataError(
            f"{name}: truncated, {body} data bytes for shape {shape} ({expected} expected)"
        )
    if body > expected:
        raise MnistDataError(f"{name}: {body - expected} unexpected bytes after the data")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_file(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise MnistDataError(f"{path}: cannot be read: {error}") from error


def check_split(images: np.ndarray, labels: np.ndarray, name: str) -> Split:
    """Check shapes, counts and label values; returns the split."""
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise MnistDataError(f"{name}: images of shape {images.shape}, expected [n, 28, 28]")
    if labels.ndim != 1:
        raise MnistDataError(f"{name}: labels of shape {labels.shape}, expected [n]")
    if len(images) != len(labels):
        raise MnistDataError(f"{name}: {len(images)} images but {len(labels)} labels")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise MnistDataError(f"{name}: label {int(labels.max())} outside 0..9")
    return Split(np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.uint8))


def find_idx(directory: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` in ``directory``, compressed or not; None when absent."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(directory: Path) -> Mnist:
    """Load the four IDX files of ``directory``."""
    arrays: dict[str, np.ndarray] = {}
    for role, stem in IDX_FILES.items():
        path = find_idx(directory, stem)
        if path is None:
            raise MnistDataError(f"{directory}: {stem}(.gz) missing. {missing_data_message()}")
        magic = IMAGES_MAGIC if role.endswith("images") else LABELS_MAGIC
        arrays[role] = parse_idx(read_file(path), str(path), magic)
    return Mnist(
        train=check_split(arrays["train_images"], arrays["train_labels"], f"{directory} (train)"),
        test=check_split(arrays["test_images"], arrays["test_labels"], f"{directory} (test)"),
        source=directory,
    )


def load_npz(path: Path) -> Mnist:
    """Load a Keras-style ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as error:
        raise MnistDataError(f"{path}: missing array {error}") from error
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise MnistDataError(f"{path}: not a readable .npz file: {error}") from error
    return Mnist(
        train=check_split(arrays["x_train"], arrays["y_train"], f"{path} (train)"),
        test=check_split(arrays["x_test"], arrays["y_test"], f"{path} (test)"),
        source=path,
    )


def load_dir(directory: Path) -> Mnist | None:
    """MNIST from a folder's IDX files, else its ``mnist.npz``; None when it holds neither."""
    if find_idx(directory, IDX_FILES["test_images"]) is not None:
        return load_idx_dir(directory)
    if (directory / NPZ_NAME).is_file():
        return load_npz(directory / NPZ_NAME)
    return None


def download_keras_npz(destination: Path, url: str = KERAS_URL) -> Path:
    """Download Keras's ``mnist.npz`` to ``destination``, checking its SHA-256."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, destination)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as error:
        message = f"download of {url} failed ({error}). {missing_data_message()}"
        raise MnistDataError(message) from error
    if hashlib.sha256(data).hexdigest() != KERAS_SHA256:
        raise MnistDataError(f"{url}: checksum mismatch. {missing_data_message()}")
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as temporary:
        temporary.write(data)
    Path(temporary.name).replace(destination)
    return destination


def load_mnist(data_dir: Path | str | None = None, download: bool = True) -> Mnist:
    """Find and load MNIST: ``data_dir``, then ``MNIST_DATA_DIR`` (a folder, or an ``.npz``
    file), then the Keras cache (downloading there if allowed). An explicit location without
    the data is an error rather than a fall-back."""
    for explicit in (data_dir, os.environ.get("MNIST_DATA_DIR")):
        if explicit:
            directory = Path(explicit)
            if directory.suffix == ".npz" and directory.is_file():
                return load_npz(directory)
            mnist = load_dir(directory) if directory.is_dir() else None
            if mnist is None:
                raise MnistDataError(missing_data_message(directory))
            return mnist
    cache = keras_cache_dir()
    mnist = load_dir(cache) if cache.is_dir() else None
    if mnist is not None:
        return mnist
    if not download:
        raise MnistDataError(missing_data_message())
    return load_npz(download_keras_npz(cache / NPZ_NAME))


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Serialise a uint8 array as an IDX file (header then data)."""
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_sha256(split: Split) -> str:
    """SHA-256 of a split written as IDX, images then labels: the same for .gz, raw or .npz."""
    digest = hashlib.sha256(idx_bytes(split.images, IMAGES_MAGIC))
    digest.update(idx_bytes(split.labels, LABELS_MAGIC))
    return digest.hexdigest()


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 ``[n, 28, 28]`` to float32 ``[n, 28, 28, 1]`` in [0, 1]: the models' scaling."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def to_model_input(images: np.ndarray, item_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 ``[n, 28, 28]`` images scaled as :func:`to_float` and laid out as
    ``[n, *item_shape]``, the input of a model taking ``item_shape`` per image."""
    return to_float(images).reshape(len(images), *item_shape)
