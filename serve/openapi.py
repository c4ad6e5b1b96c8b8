"""Placeholder, being written."""

import falcon


def add_routes(app: falcon.App, *args: object) -> None:
    """Mount nothing yet."""
