"""Model runtime: providers, metadata read from the file, layouts, the repository."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from serve.errors import ModelNotFound
from serve.model.runtime import CPU, CUDA, ModelRepository, OnnxModel, resolve_providers
from tests.fakes import write_fake_model

WITH_CUDA = [CUDA, CPU]


def pretend_available(monkeypatch: pytest.MonkeyPatch, providers: list[str]) -> None:
    """Make onnxruntime report ``providers`` as available (there is no GPU here)."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)


@pytest.mark.parametrize(
    ("choice", "available", "expected"),
    [
        ("cpu", WITH_CUDA, [CPU]),
        ("auto", [CPU], [CPU]),
        ("auto", WITH_CUDA, [CUDA, CPU]),
        ("cuda", WITH_CUDA, [CUDA, CPU]),
    ],
)
def test_resolve_providers(
    monkeypatch: pytest.MonkeyPatch, choice: str, available: list[str], expected: list[str]
) -> None:
    pretend_available(monkeypatch, available)
    assert resolve_providers(choice) == expected


def test_cuda_without_onnxruntime_gpu_fails_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, fake_models: Path
) -> None:
    pretend_available(monkeypatch, [CPU])
    with pytest.raises(RuntimeError, match="install onnxruntime-gpu"):
        ModelRepository.load(fake_models, "cnn", "cuda", 1)


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_cuda_listed_but_not_active_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, fake_models: Path
) -> None:
    pretend_available(monkeypatch, WITH_CUDA)
    with pytest.raises(RuntimeError, match=r"MNIST_PROVIDERS=cuda but model \w+ runs on CPU"):
        ModelRepository.load(fake_models, "cnn", "cuda", 1)


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_auto_reports_the_provider_really_used_and_logs_it(
    monkeypatch: pytest.MonkeyPatch, fake_models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pretend_available(monkeypatch, WITH_CUDA)
    with caplog.at_level(logging.INFO, logger="serve.model.runtime"):
        repository = ModelRepository.load(fake_models, "cnn", "auto", 1)
    assert {model.info.provider for model in repository} == {CPU}
    for name in ("cnn", "softmax"):
        assert any(
            f"model {name} " in record.message and record.message.endswith(CPU)
            for record in caplog.records
        ), caplog.text
    assert "CUDA was asked for but is not active" in caplog.text


def test_model_info_comes_from_the_file(repository: ModelRepository) -> None:
    cnn = repository.get("cnn").info
    assert (cnn.name, cnn.classifier, cnn.version) == ("cnn", "CNNClassifier", "1")
    assert cnn.input_shape == (-1, 28, 28, 1)
    assert cnn.output_shape == (-1, 10)
    assert cnn.labels == tuple(str(digit) for digit in range(10))
    assert cnn.metadata["test_accuracy"] == "0.1"
    assert repository.get("softmax").info.input_shape == (-1, 784)


@pytest.mark.parametrize("name", ["cnn", "softmax"])
def test_predict_reads_the_layout_of_each_model(repository: ModelRepository, name: str) -> None:
    images = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    probabilities = repository.get(name).predict(images)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    single = repository.get(name).predict(images[2:3])
    np.testing.assert_allclose(single[0], probabilities[2], rtol=1e-5)


def test_model_name_and_version_come_from_metadata_not_filename(tmp_path: Path) -> None:
    path = write_fake_model(tmp_path / "exported-file.onnx", "cnn", version="7")
    model = OnnxModel(path, [CPU], 1)
    assert (model.info.name, model.info.version) == ("cnn", "7")


def test_unknown_model_lists_known_ones(repository: ModelRepository) -> None:
    with pytest.raises(ModelNotFound, match=r"'resnet'.*cnn, softmax"):
        repository.get("resnet")
    assert repository.get().info.name == "cnn"
    assert repository.names() == ["cnn", "softmax"]


def test_ready_only_after_warm_up(fake_models: Path) -> None:
    repository = ModelRepository.load(fake_models, "softmax", "cpu", 1)
    assert not repository.ready
    repository.warm_up()
    assert repository.ready


def test_empty_folder_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"no \.onnx files"):
        ModelRepository.load(tmp_path, "cnn", "cpu", 1)


def test_default_model_must_exist(fake_models: Path) -> None:
    with pytest.raises(RuntimeError, match="default model 'lenet'"):
        ModelRepository.load(fake_models, "lenet", "cpu", 1)
