"""Liveness and readiness, for load balancers and Kubernetes probes."""

from __future__ import annotations

import falcon

from serve.model.runtime import ModelRepository


class Liveness:
    """``GET /health/live``: the process is up and answering."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "live"}


class Readiness:
    """``GET /health/ready``: every model loaded and warmed (503 until then)."""

    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        models = [
            {
                "name": model.info.name,
                "version": model.info.version,
                "provider": model.info.provider,
            }
            for model in self._repository
        ]
        ready = self._repository.ready
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": "ready" if ready else "loading", "models": models}
