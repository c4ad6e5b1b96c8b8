"""Open Inference Protocol v2 (the KServe/Triton REST protocol) under ``/v2``, with Triton's
binary tensor data and classification extensions. The routes are in ``serve/app.py``."""
