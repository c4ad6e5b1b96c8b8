"""Serving side: a Falcon WSGI app over onnxruntime sessions, run as ``gunicorn serve:app``.

Never imports TensorFlow, tf2onnx or ``train/``.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """Build ``serve.app`` on first access, so importing ``serve.images.normalise`` stays cheap
    and gunicorn workers (``preload_app = False``) each load their models after fork."""
    if name == "app":
        from serve.app import create_app

        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module 'serve' has no attribute {name!r}")
