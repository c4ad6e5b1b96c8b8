"""``mnist-predict``: classify digit images from files, folders or stdin, without a server.

The same image reading (:func:`serve.images.read_digit`) and model runtime
(:class:`serve.model.runtime.ModelRepository`) as ``gunicorn serve:app``: images are decoded
and normalised in parallel worker processes (``--jobs``), classified in batches
(``--batch-size``) by one onnxruntime session in this process, and written in the order they
were named, one row per image, as they are done.

    mnist-predict examples/
    mnist-predict -c SoftmaxClassifier -p examples/seven.png
    python -m serve.cli --format jsonl --recursive uploads/ > predictions.jsonl
"""

from serve.cli.command import build_parser, main

__all__ = ["build_parser", "main"]
