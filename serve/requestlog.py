"""Placeholder, being written."""

import falcon


class RequestLog:
    """Falcon middleware writing one JSON line per request (placeholder)."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Nothing yet."""
