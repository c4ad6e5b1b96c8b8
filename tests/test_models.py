"""Model building: input and output shapes, parameter counts, softmax inside the model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def models() -> Any:
    from train.quiet import import_tensorflow

    import_tensorflow()
    from train import models

    return models


def test_softmax_is_one_dense_layer(models: Any) -> None:
    model = models.build("softmax")
    assert model.input_shape == (None, 784)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 784 * 10 + 10
    assert [layer.__class__.__name__ for layer in model.layers] == ["InputLayer", "Dense"]


def test_cnn_shapes_and_size(models: Any) -> None:
    model = models.build("cnn")
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 75_866
    kinds = {layer.__class__.__name__ for layer in model.layers}
    assert "BatchNormalization" in kinds
    assert not any(kind.startswith("Random") for kind in kinds), "augmentation belongs in data"


def test_tutorial_cnn_has_the_original_size(models: Any) -> None:
    assert models.build_tutorial_cnn().count_params() == 3_274_634


@pytest.mark.parametrize("name", ["softmax", "cnn"])
def test_outputs_are_probabilities(models: Any, name: str) -> None:
    model = models.build(name)
    assert model.layers[-1].name == "probabilities"
    images = np.random.default_rng(0).random((3, *models.input_shape(name)), dtype=np.float32)
    probabilities = np.asarray(model(images, training=False))
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_augmentation_is_seeded_and_keeps_images_valid(models: Any, mnist_dir: Any) -> None:
    import tensorflow

    from train import augment, data

    test = data.load_mnist(mnist_dir).test.head(64)
    images = tensorflow.constant(data.to_float(test.images))
    labels = tensorflow.constant(test.labels)

    def run(step: int) -> np.ndarray:
        seed = tensorflow.constant([1, step], tensorflow.int64)
        augmented, same_labels = augment.augment(images, labels, seed)
        assert np.array_equal(np.asarray(same_labels), test.labels)
        return np.asarray(augmented)

    first, again, other = run(0), run(0), run(1)
    assert first.shape == (64, 28, 28, 1)
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, np.asarray(images))
    ink_ratio = first.sum(axis=(1, 2, 3)) / np.asarray(images).sum(axis=(1, 2, 3))
    assert 0.5 < float(np.median(ink_ratio)) < 1.5


def test_tensorflow_start_up_noise_is_kept_off_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from train.quiet import stderr_silenced

    with stderr_silenced():
        os.write(2, b"oneDNN custom operations are on\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), stderr_silenced():
        os.write(2, b"the reason it failed\n")
        raise RuntimeError("import failed")
    assert "the reason it failed" in capfd.readouterr().err
