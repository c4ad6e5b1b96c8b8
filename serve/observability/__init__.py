"""Prometheus metrics and the JSON request log."""
