"""``python -m export``: a trained ``.keras`` model to ``onnx_models/<model>.onnx``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from export import convert, parity
from train import cli, contract


def parse_arguments(arguments: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog=cli.program_name("export", "mnist-export"),
        description=(
            "Convert a model trained by `python -m train` to ONNX with tf2onnx (input 'image', "
            "output 'probabilities', dynamic batch dimension 'batch'), check that onnxruntime "
            "and Keras agree on all 10,000 MNIST test images (every argmax, probabilities "
            "within the tolerance) and write the model with its metadata (test accuracy, "
            "training data checksum, versions, ...). Exits 1 without writing when parity fails."
        ),
    )
    parser.add_argument(
        "--model",
        choices=contract.MODELS,
        default="cnn",
        help="which model to export (default: %(default)s)",
    )
    parser.add_argument("--input", type=Path, help="the trained model (default: runs/MODEL.keras)")
    parser.add_argument(
        "--output", type=Path, help="where to write it (default: onnx_models/MODEL.onnx)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the MNIST files (default: $MNIST_DATA_DIR, then the Keras cache)",
    )
    parser.add_argument(
        "--opset", type=int, default=convert.OPSET, help="ONNX opset (default: %(default)s)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=parity.TOLERANCE,
        help="largest allowed |Keras - onnxruntime| probability difference (default: %(default)s)",
    )
    parser.add_argument(
        "--test-images", type=int, help="check only the first N test images (default: all)"
    )
    parser.add_argument(
        "--version",
        default="1",
        help="model version written to the metadata (default: %(default)s)",
    )
    return parser.parse_args(arguments)


def main(arguments: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parsed = parse_arguments(arguments)
    command = cli.start("export", arguments)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    from export import pipeline
    from train.data import MnistDataError

    request = pipeline.Request(
        model=parsed.model,
        keras_path=parsed.input or Path("runs") / f"{parsed.model}.keras",
        output=parsed.output or Path("onnx_models") / f"{parsed.model}.onnx",
        data_dir=parsed.data_dir,
        opset=parsed.opset,
        tolerance=parsed.tolerance,
        test_images=parsed.test_images,
        version=parsed.version,
        command=command,
    )
    try:
        model, report = pipeline.export(request)
    except (pipeline.ExportError, MnistDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    entries = {entry.key: entry.value for entry in model.metadata_props}
    print(f"{request.model}: parity passed, {report.describe()}")
    print(f"wrote {request.output}: {json.dumps({'test_accuracy': entries['test_accuracy']})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
