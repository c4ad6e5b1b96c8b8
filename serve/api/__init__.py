"""The upload API (/predict), the page and its static files, health and the OpenAPI document:
HTTP resources only."""
