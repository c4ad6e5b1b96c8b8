"""Wiring only: ``create_app`` builds the Falcon app from settings and collaborators."""

from __future__ import annotations

import logging

import falcon
import falcon.media
import orjson

from serve import errors, health, imaging, metrics, openapi, page, predict, requestlog, v2
from serve.runtime import ModelRepository
from serve.settings import Settings

log = logging.getLogger(__name__)


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
    imaging.load_decoders()
    app = falcon.App()
    json_handler = falcon.media.JSONHandler(dumps=orjson.dumps, loads=orjson.loads)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.add_middleware(requestlog.RequestLog())
    app.add_middleware(metrics.RequestMetrics())
    errors.install(app)
    health.add_routes(app, repository)
    predict.add_routes(app, settings, repository)
    v2.add_routes(app, settings, repository)
    metrics.add_routes(app)
    openapi.add_routes(app, repository)
    page.add_routes(app, repository)
    return app
