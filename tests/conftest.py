"""Shared fixtures: MNIST location, fake models, an app over them."""

from __future__ import annotations

import os
from pathlib import Path

import falcon.testing
import pytest

from serve.app import create_app
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.fakes import fake_model_dir

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_MODELS = ROOT / "onnx_models"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder with MNIST's IDX files; fails under CI=true when missing, skips elsewhere."""
    directory = Path(os.environ.get("MNIST_DATA_DIR", ROOT.parent / "shared" / "data" / "mnist"))
    if (
        not (directory / "t10k-images-idx3-ubyte.gz").exists()
        and not (directory / "t10k-images-idx3-ubyte").exists()
    ):
        message = (
            f"MNIST not found in {directory}: these tests read the four IDX files "
            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            "t10k-labels-idx1-ubyte.gz, as MNIST distributes them). Put them in one folder and "
            "set MNIST_DATA_DIR to it; by default the tests look in ../shared/data/mnist beside "
            "the checkout"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return directory


@pytest.fixture(scope="session")
def fake_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with fake ``cnn`` and ``softmax`` models."""
    return fake_model_dir(tmp_path_factory.mktemp("fake_models"))


@pytest.fixture()
def settings(fake_models: Path) -> Settings:
    """Settings over the fake models, CPU, one thread."""
    return Settings(model_dir=fake_models, providers="cpu", intra_op_threads=1)


@pytest.fixture()
def repository(settings: Settings) -> ModelRepository:
    """A loaded and warmed repository over the fake models."""
    repo = ModelRepository.load(
        settings.model_dir, settings.default_model, settings.providers, settings.intra_op_threads
    )
    repo.warm_up()
    return repo


@pytest.fixture()
def client(settings: Settings, repository: ModelRepository) -> falcon.testing.TestClient:
    """falcon.testing client over an app with the fake models."""
    return falcon.testing.TestClient(create_app(settings, repository))
