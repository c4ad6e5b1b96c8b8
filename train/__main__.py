"""``python -m train``: train the softmax or the CNN model on MNIST and save it as ``.keras``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from train import cli, contract
from train.data import MnistDataError


def parse_arguments(arguments: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with per-model defaults filled in later for what was not given."""
    parser = argparse.ArgumentParser(
        prog=cli.program_name("train", "mnist-train"),
        description=(
            "Train a digit classifier on MNIST (seeded, 5,000 training images held out for "
            "validation, the epoch with the best validation accuracy kept), print its test "
            "accuracy and save it as .keras with a .json summary next to it. "
            "Then run `python -m export --model NAME` to make onnx_models/NAME.onnx."
        ),
    )
    parser.add_argument(
        "--model",
        choices=contract.MODELS,
        default="cnn",
        help="which model to train (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, help="training epochs (default: softmax 15, cnn 24; quick 1)"
    )
    parser.add_argument("--batch-size", type=int, help="images per step (default 128)")
    parser.add_argument(
        "--learning-rate",
        type=float,
        help="peak Adam learning rate of the warm-up + cosine schedule "
        "(default: softmax 0.002, cnn 0.003)",
    )
    parser.add_argument(
        "--output", type=Path, help="where to save the model (default: runs/MODEL.keras)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the MNIST IDX files (.gz or raw) or mnist.npz "
        "(default: $MNIST_DATA_DIR, then the Keras cache ~/.keras/datasets, downloaded if absent)",
    )
    parser.add_argument(
        "--no-augmentation", action="store_true", help="train the CNN without augmentation"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3,000 training images, one epoch, 1,000 test images",
    )
    return parser.parse_args(arguments)


def main(arguments: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parsed = parse_arguments(arguments)
    command = cli.start("train", arguments)
    from train import fit

    defaults = fit.DEFAULTS[parsed.model]
    options = fit.Options(
        model=parsed.model,
        epochs=parsed.epochs or (1 if parsed.quick else defaults["epochs"]),
        batch_size=parsed.batch_size or defaults["batch_size"],
        learning_rate=parsed.learning_rate or defaults["learning_rate"],
        output=parsed.output or Path("runs") / f"{parsed.model}.keras",
        seed=parsed.seed,
        data_dir=parsed.data_dir,
        quick=parsed.quick,
        augment=defaults["augment"] and not parsed.no_augmentation,
        command=command,
    )
    try:
        summary = fit.train(options)
    except MnistDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{options.model}: test accuracy {summary['test_accuracy']:.4f} "
        f"(loss {summary['test_loss']:.4f}) on {summary['test_images']} test images; "
        f"best epoch {summary['best_epoch']}/{summary['epochs']}, {summary['seconds']:.0f} s; "
        f"saved {options.output} and {options.output.with_suffix('.json')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
