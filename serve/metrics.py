"""Placeholder, being written."""

import falcon


class RequestMetrics:
    """Falcon middleware recording per-request metrics (placeholder)."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Nothing yet."""


def add_routes(app: falcon.App) -> None:
    """Mount nothing yet."""
