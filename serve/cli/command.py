"""The ``mnist-predict`` command: its arguments, the model it uses, and the run."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from serve.cli.output import FORMATS, PROGRESS_THRESHOLD, WRITERS, Csv, JsonLines, Progress, Table
from serve.cli.reading import DEFAULT_BATCH_SIZE, Result, classify, read_digits
from serve.cli.sources import IMAGE_SUFFIXES, UsageError, gather
from serve.cpus import usable_cpus
from serve.errors import ServiceError
from serve.model.runtime import ModelRepository
from serve.settings import PROVIDER_CHOICES, Settings

PROG = "mnist-predict"
EXIT_OK, EXIT_UNREAD, EXIT_USAGE = 0, 1, 2

EPILOG = f"""\
A PATH is an image file (read whatever its name), a folder, or - for one image on stdin.
A folder gives its files named {" ".join(IMAGE_SUFFIXES)},
in name order, hidden ones skipped; --recursive descends into its subfolders.

Output: one row per image, in the order named, on stdout. jsonl and csv rows have path,
label, confidence, model, classifier and error (empty when the image was read); a file that
cannot be read gets the error text the server would answer, and the run goes on. Past
{PROGRESS_THRESHOLD} images a progress bar is drawn on stderr when stderr is a terminal.

Exit status: 0 every image was read, 1 some were not, 2 usage error (bad flag, a PATH that
does not exist, no images found, a model that is not there).

Environment: the server's MNIST_MODEL_DIR, MNIST_DEFAULT_MODEL, MNIST_PROVIDERS and
MNIST_MAX_IMAGE_PIXELS give the defaults.

examples:
  {PROG} examples/
  {PROG} -c SoftmaxClassifier -p examples/seven.png
  {PROG} --format csv --probabilities --recursive uploads/ > predictions.csv
  curl -s https://example.org/digit.png | {PROG} -
"""


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    """The command line, with ``settings`` (the server's, from the environment) as defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Classify handwritten-digit images with the ONNX models, without a server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="image file, folder, or - for stdin"
    )
    parser.add_argument(
        "-p",
        "--path",
        dest="more_paths",
        action="append",
        default=[],
        metavar="PATH",
        help="one more PATH; the original classifier.py's spelling (repeatable)",
    )
    parser.add_argument(
        "-m",
        "--model",
        help=f"model name, cnn or softmax for the committed models (default: "
        f"{settings.default_model}, as the server's MNIST_DEFAULT_MODEL)",
    )
    parser.add_argument(
        "-c",
        "--classifier",
        help="the model by the original project's name: CNNClassifier or SoftmaxClassifier",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        default="table",
        help="table: aligned columns for reading (the default, on a terminal or not); "
        "jsonl: one JSON object per line; csv: a header row, then one row per image",
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="add the ten class probabilities to each row (jsonl: a list; table, csv: p0..p9)",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="read folders' subfolders too"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=settings.model_dir,
        help="folder of .onnx models (default: MNIST_MODEL_DIR, else the committed onnx_models/)",
    )
    parser.add_argument(
        "--providers",
        choices=PROVIDER_CHOICES,
        default=settings.providers,
        help="onnxruntime providers, as the server's MNIST_PROVIDERS: auto (CUDA where it "
        "really runs, else CPU), cpu, or cuda (fail when CUDA cannot be had); "
        f"default: {settings.providers}",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        default=usable_cpus(),
        help="processes decoding and normalising images in parallel; 1 decodes in this "
        "process (default: the CPUs this process may use, %(default)s here)",
    )
    parser.add_argument(
        "-b",
        "--batch-size",
        type=_positive,
        default=DEFAULT_BATCH_SIZE,
        help="images per model run; also how many results are held before they are "
        "written (default: %(default)s)",
    )
    return parser


def choose_model(repository: ModelRepository, model: str | None, classifier: str | None) -> str:
    """The model name that ``-m`` and ``-c`` ask for (the repository's default for
    neither); UsageError when a name is unknown or the two disagree."""
    chosen = model
    if classifier is not None:
        by_classifier = {each.info.classifier.lower(): each.info.name for each in repository}
        if classifier.lower() not in by_classifier:
            known = ", ".join(sorted(each.info.classifier for each in repository))
            raise UsageError(f"unknown classifier {classifier!r}; known classifiers: {known}")
        chosen = by_classifier[classifier.lower()]
        if model is not None and model != chosen:
            raise UsageError(f"-m {model} and -c {classifier} name different models")
    try:
        return repository.get(chosen).info.name
    except ServiceError as ex:
        raise UsageError(ex.description) from ex


def load_models(arguments: argparse.Namespace, settings: Settings) -> ModelRepository:
    """The models of ``--model-dir``, with the server's default model as the default; in a
    folder without that one, the model ``-m`` names. UsageError when they cannot be loaded."""
    defaults = [settings.default_model]
    if arguments.model is not None and arguments.model != settings.default_model:
        defaults.append(arguments.model)
    for default in defaults:
        try:
            return ModelRepository.load(
                arguments.model_dir, default, arguments.providers, usable_cpus()
            )
        except (RuntimeError, OSError) as ex:
            failure = ex
    raise UsageError(str(failure)) from failure


def run(arguments: argparse.Namespace, settings: Settings) -> int:
    """Classify what ``arguments`` name and write the rows; returns the exit status."""
    paths = [*arguments.paths, *arguments.more_paths]
    sources = gather(paths, arguments.recursive, sys.stdin.buffer)
    unread = 0
    with read_digits(sources, arguments.jobs, settings.max_image_pixels) as digits:
        repository = load_models(arguments, settings)
        model = repository.get(choose_model(repository, arguments.model, arguments.classifier))
        writer = WRITERS[arguments.format](
            sys.stdout, model.info, arguments.probabilities, [source.path for source in sources]
        )
        bar = Progress(len(sources), sys.stderr, sys.stdout)
        try:
            counted = _counted(digits, bar.advance)
            for results in classify(model, sources, counted, arguments.batch_size):
                bar.write(functools.partial(_write_all, writer, results))
                unread += sum(result.error is not None for result in results)
        finally:
            bar.close()
    sys.stdout.flush()
    return EXIT_UNREAD if unread else EXIT_OK


def _write_all(writer: JsonLines | Csv | Table, results: list[Result]) -> None:
    """Write every row of ``results``."""
    for result in results:
        writer.write(result)


def _counted(items: Iterable[Any], advance: Callable[[], None]) -> Iterator[Any]:
    """``items``, calling ``advance`` after each."""
    for item in items:
        yield item
        advance()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mnist-predict`` console script; returns the exit status (0, 1 or 2)."""
    try:
        settings = Settings.from_env()
    except ValueError as ex:
        print(f"{PROG}: error: {ex}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(settings)
    arguments = parser.parse_args(argv)
    if not arguments.paths and not arguments.more_paths:
        parser.error("name at least one PATH (an image, a folder, or - for stdin)")
    try:
        return run(arguments, settings)
    except UsageError as ex:
        parser.error(str(ex))
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNREAD
    except KeyboardInterrupt:
        return 130
