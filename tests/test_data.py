"""MNIST loading: IDX (.gz and raw) and .npz, the search order, and every corruption."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from train import data


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> Path:
    raw = data.idx_bytes(array, magic)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def small_mnist(directory: Path, train: int = 12, test: int = 5, compress: bool = True) -> Path:
    """Four small IDX files with recognisable content: image i is filled with value i."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = np.repeat(np.arange(count, dtype=np.uint8), 28 * 28).reshape(count, 28, 28)
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images, data.IMAGES_MAGIC, compress)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, data.LABELS_MAGIC, compress)
    return directory


@pytest.mark.parametrize("compress", [True, False])
def test_loads_idx_files(tmp_path: Path, compress: bool) -> None:
    mnist = data.load_mnist(small_mnist(tmp_path, compress=compress))
    assert mnist.train.images.shape == (12, 28, 28)
    assert mnist.train.images.dtype == np.uint8
    assert mnist.test.labels.tolist() == [0, 1, 2, 3, 4]
    assert int(mnist.train.images[7, 3, 3]) == 7


def test_loads_keras_npz(tmp_path: Path) -> None:
    idx = data.load_mnist(small_mnist(tmp_path / "idx"))
    (tmp_path / "npz").mkdir()
    np.savez(
        tmp_path / "npz" / "mnist.npz",
        x_train=idx.train.images,
        y_train=idx.train.labels,
        x_test=idx.test.images,
        y_test=idx.test.labels,
    )
    npz = data.load_mnist(tmp_path / "npz")
    assert np.array_equal(npz.train.images, idx.train.images)
    assert npz.train_sha256 == idx.train_sha256
    assert len(data.load_mnist(tmp_path / "npz" / "mnist.npz").test) == 5


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = small_mnist(tmp_path / "explicit", train=3)
    from_env = small_mnist(tmp_path / "env", train=4)
    keras_home = tmp_path / "keras"
    small_mnist(keras_home / "datasets", train=5)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("MNIST_DATA_DIR", str(from_env))
    assert len(data.load_mnist(explicit).train) == 3
    assert len(data.load_mnist().train) == 4
    monkeypatch.delenv("MNIST_DATA_DIR")
    assert len(data.load_mnist().train) == 5


def test_missing_data_names_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(data.MnistDataError, match=r"train-images-idx3-ubyte\.gz"):
        data.load_mnist(tmp_path / "empty")
    with pytest.raises(data.MnistDataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        data.load_mnist(download=False)


def test_failed_download_says_where_to_put_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(data.MnistDataError, match=r"download of .* failed.*mnist\.npz"):
        data.download_keras_npz(tmp_path / "mnist.npz", url="http://127.0.0.1:9/mnist.npz")


def test_wrong_magic(tmp_path: Path) -> None:
    directory = small_mnist(tmp_path)
    labels = np.zeros(12, dtype=np.uint8)
    write_idx(directory / "train-labels-idx1-ubyte", labels, data.IMAGES_MAGIC)
    with pytest.raises(data.MnistDataError, match="magic number 2051, expected 2049"):
        data.load_mnist(directory)


def test_count_mismatch(tmp_path: Path) -> None:
    directory = small_mnist(tmp_path)
    write_idx(directory / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8), data.LABELS_MAGIC)
    with pytest.raises(data.MnistDataError, match="5 images but 4 labels"):
        data.load_mnist(directory)


@pytest.mark.parametrize(
    ("compress", "cut", "message"),
    [(False, 100, "truncated"), (True, 40, "cannot be read")],
    ids=["raw", "gzip"],
)
def test_truncated_file(tmp_path: Path, compress: bool, cut: int, message: str) -> None:
    directory = small_mnist(tmp_path, compress=compress)
    path = directory / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(data.MnistDataError, match=message):
        data.load_mnist(directory)


def test_corrupt_gzip(tmp_path: Path) -> None:
    directory = small_mnist(tmp_path)
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all" * 10)
    with pytest.raises(data.MnistDataError, match=r"t10k-images-idx3-ubyte\.gz: cannot be read"):
        data.load_mnist(directory)


def test_corrupt_npz(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(data.MnistDataError, match=r"mnist\.npz"):
        data.load_mnist(tmp_path)


def test_wrong_image_shape(tmp_path: Path) -> None:
    directory = small_mnist(tmp_path, compress=False)
    path = directory / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[8:16] = struct.pack(">II", 14, 56)
    path.write_bytes(bytes(raw))
    with pytest.raises(data.MnistDataError, match=r"shape \(12, 14, 56\)"):
        data.load_mnist(directory)


def test_label_out_of_range(tmp_path: Path) -> None:
    directory = small_mnist(tmp_path)
    write_idx(directory / "t10k-labels-idx1-ubyte", np.full(5, 12, np.uint8), data.LABELS_MAGIC)
    with pytest.raises(data.MnistDataError, match=r"label 12 outside 0\.\.9"):
        data.load_mnist(directory)


def test_to_float_scales_to_unit_range() -> None:
    images = np.array([[[0, 255] * 14] * 28], dtype=np.uint8)
    floats = data.to_float(images)
    assert floats.shape == (1, 28, 28, 1)
    assert floats.dtype == np.float32
    assert floats.min() == 0.0 and floats.max() == 1.0


@pytest.mark.slow
def test_real_mnist_matches_published_checksums(mnist_dir: Path) -> None:
    mnist = data.load_mnist(mnist_dir)
    assert (len(mnist.train), len(mnist.test)) == (60_000, 10_000)
    sums = dict(
        reversed(line.split()) for line in (mnist_dir / "SHA256SUMS").read_text().splitlines()
    )
    rebuilt = data.idx_bytes(mnist.test.images, data.IMAGES_MAGIC)
    assert hashlib.sha256(rebuilt).hexdigest() == sums["t10k-images-idx3-ubyte"]
    assert np.bincount(mnist.test.labels).tolist()[:2] == [980, 1135]


@pytest.mark.slow
def test_real_test_set_loads_from_a_copy(mnist_dir: Path, tmp_path: Path) -> None:
    for name in data.IDX_FILES.values():
        shutil.copy(mnist_dir / f"{name}.gz", tmp_path)
    assert len(data.load_mnist(tmp_path).test) == 10_000
