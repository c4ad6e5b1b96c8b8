"""Settings: one object read once from ``MNIST_*`` variables, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.settings import DEFAULT_MODEL_DIR, Settings


def test_defaults_serve_the_committed_models_with_the_cnn() -> None:
    settings = Settings.from_env({})
    assert settings.model_dir == DEFAULT_MODEL_DIR
    assert settings.default_model == "cnn"
    assert settings.providers == "auto"
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.max_files >= 1
    assert settings.intra_op_threads >= 1


def test_variables_override_defaults_with_their_types() -> None:
    settings = Settings.from_env(
        {
            "MNIST_MODEL_DIR": "/models",
            "MNIST_DEFAULT_MODEL": "softmax",
            "MNIST_PROVIDERS": "CPU",
            "MNIST_INTRA_OP_THREADS": "3",
            "MNIST_MAX_BODY_BYTES": "1000",
            "MNIST_MAX_IMAGE_PIXELS": "2000",
            "MNIST_MAX_FILES": "4",
        }
    )
    assert settings.model_dir == Path("/models")
    assert settings.default_model == "softmax"
    assert settings.providers == "cpu"
    assert settings.intra_op_threads == 3
    assert (settings.max_body_bytes, settings.max_image_pixels, settings.max_files) == (
        1000,
        2000,
        4,
    )


def test_empty_variables_keep_the_defaults() -> None:
    assert Settings.from_env({"MNIST_MAX_FILES": "", "MNIST_DEFAULT_MODEL": " "}) == (
        Settings.from_env({})
    )


@pytest.mark.parametrize(
    ("cores", "workers", "threads"), [(2, "2", 1), (8, "2", 4), (4, None, 1), (2, "4", 1)]
)
def test_threads_default_to_cores_over_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: str | None, threads: int
) -> None:
    monkeypatch.setattr("serve.settings.usable_cpus", lambda: cores)
    environ = {"WEB_CONCURRENCY": workers} if workers else {}
    assert Settings.from_env(environ).intra_op_threads == threads


def test_explicit_threads_win_over_the_worker_count() -> None:
    settings = Settings.from_env({"WEB_CONCURRENCY": "16", "MNIST_INTRA_OP_THREADS": "2"})
    assert settings.intra_op_threads == 2


def test_unknown_provider_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"MNIST_PROVIDERS must be one of auto, cpu, cuda"):
        Settings.from_env({"MNIST_PROVIDERS": "tpu"})


@pytest.mark.parametrize(
    ("value", "message"), [("many", "a whole number"), ("0", "at least 1"), ("-5", "at least 1")]
)
def test_bad_numbers_are_refused_by_name(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"MNIST_MAX_FILES must be {message}"):
        Settings.from_env({"MNIST_MAX_FILES": value})
