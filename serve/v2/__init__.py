"""Open Inference Protocol v2 (the KServe/Triton REST protocol) under ``/v2``, with Triton's
binary tensor data and classification extensions."""

from __future__ import annotations

import falcon

from serve.runtime import ModelRepository
from serve.settings import Settings
from serve.v2 import resources


def add_routes(app: falcon.App, settings: Settings, repository: ModelRepository) -> None:
    """Mount the v2 health, metadata and inference routes, with and without a version."""
    app.add_route("/v2", resources.ServerMetadata())
    app.add_route("/v2/health/live", resources.ServerLive())
    app.add_route("/v2/health/ready", resources.ServerReady(repository))
    model_metadata = resources.ModelMetadata(repository)
    model_ready = resources.ModelReady(repository)
    model_infer = resources.ModelInfer(settings, repository)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_route(prefix, model_metadata)
        app.add_route(f"{prefix}/ready", model_ready)
        app.add_route(f"{prefix}/infer", model_infer)
