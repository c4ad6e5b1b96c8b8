"""Liveness and readiness."""

from __future__ import annotations

import falcon.testing

from serve.app import create_app
from serve.model.runtime import ModelRepository
from serve.settings import Settings


def test_live(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/health/live")
    assert result.status_code == 200
    assert result.json == {"status": "live"}


def test_ready_lists_models_with_provider_and_version(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/health/ready")
    assert result.status_code == 200
    assert result.json["status"] == "ready"
    assert {model["name"] for model in result.json["models"]} == {"cnn", "softmax"}
    assert all(model["provider"] == "CPUExecutionProvider" for model in result.json["models"])
    assert all(model["version"] == "1" for model in result.json["models"])


def test_not_ready_before_warm_up(settings: Settings) -> None:
    cold = ModelRepository.load(settings.model_dir, "cnn", "cpu", 1)
    client = falcon.testing.TestClient(create_app(settings, cold))
    assert client.simulate_get("/health/ready").status_code == 503
    cold.warm_up()
    assert client.simulate_get("/health/ready").status_code == 200
