"""Wiring only: ``create_app`` builds the Falcon app from settings and collaborators, and
holds the whole route table."""

from __future__ import annotations

import falcon
import falcon.media
import orjson

from serve import errors
from serve.api import health, openapi, page, predict
from serve.images import decode
from serve.model.runtime import ModelRepository
from serve.observability import metrics, requestlog
from serve.settings import Settings
from serve.v2 import resources as v2

#: The v2 model routes, with and without a version.
V2_MODEL_PREFIXES = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")


def create_app(
    settings: Settings | None = None, repository: ModelRepository | None = None
) -> falcon.App:
    """Build the WSGI app. Tests pass their own settings and repository; by default the
    settings come from the environment and the models from ``settings.model_dir``."""
    settings = settings or Settings.from_env()
    if repository is None:
        repository = ModelRepository.load(
            settings.model_dir,
            settings.default_model,
            settings.providers,
            settings.intra_op_threads,
        )
        repository.warm_up()
    decode.load_decoders()
    app = falcon.App()
    app.add_middleware(requestlog.RequestLog())
    app.add_middleware(metrics.RequestMetrics())
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    errors.install(app)

    # The upload API (the original project's /upload kept as an alias) and the page.
    prediction = predict.Prediction(settings, repository)
    app.add_route("/predict", prediction)
    app.add_route("/upload", prediction)
    assets = page.load_assets()
    app.add_route("/", page.Page(page.render_page(repository, assets)))
    app.add_route("/static/{name}", page.StaticFile(assets))

    # Service routes: health, metrics, the OpenAPI document.
    app.add_route("/health/live", health.Liveness())
    app.add_route("/health/ready", health.Readiness(repository))
    app.add_route("/metrics", metrics.Metrics())
    app.add_route("/openapi.json", openapi.OpenApiDocument(repository))

    # The Open Inference Protocol v2.
    app.add_route("/v2", v2.ServerMetadata())
    app.add_route("/v2/health/live", v2.ServerLive())
    app.add_route("/v2/health/ready", v2.ServerReady(repository))
    model_metadata = v2.ModelMetadata(repository)
    model_ready = v2.ModelReady(repository)
    model_infer = v2.ModelInfer(settings, repository)
    for prefix in V2_MODEL_PREFIXES:
        app.add_route(prefix, model_metadata)
        app.add_route(f"{prefix}/ready", model_ready)
        app.add_route(f"{prefix}/infer", model_infer)
    return app
