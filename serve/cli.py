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

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import functools
import itertools
import json
import multiprocessing
import multiprocessing.pool
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from serve import images
from serve.api.predict import describe
from serve.cpus import usable_cpus
from serve.errors import ServiceError
from serve.model.runtime import ModelInfo, ModelRepository, OnnxModel
from serve.settings import PROVIDER_CHOICES, Settings

PROG = "mnist-predict"
#: File name endings (lower case) that count as images when a folder is read; a file named
#: on the command line is read whatever its name.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
FORMATS = ("table", "jsonl", "csv")
STDIN = "-"
DEFAULT_BATCH_SIZE = 256
#: Images handed to the decode workers at a time (two such parts at most are in flight).
IN_FLIGHT = 2048
#: More images than this get a progress bar (on stderr, and only when it is a terminal).
PROGRESS_THRESHOLD = 100
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


class UsageError(Exception):
    """The command line asks for something that cannot be done; exit status 2."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One image to classify: how it is shown in the output, and its file or its bytes."""

    path: str
    file: Path | None = None
    data: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    """What became of one image: its probabilities, or the error that stopped it."""

    path: str
    probabilities: np.ndarray | None = None
    error: str | None = None


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


def folder_images(folder: Path, recursive: bool) -> Iterator[Path]:
    """The image files of ``folder`` (by name ending, hidden ones skipped), sorted by name;
    with ``recursive``, then those of each non-hidden subfolder, sorted likewise."""
    entries = sorted(folder.iterdir(), key=lambda entry: entry.name)
    visible = [entry for entry in entries if not entry.name.startswith(".")]
    for entry in visible:
        if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
            yield entry
    if recursive:
        for entry in visible:
            if entry.is_dir():
                yield from folder_images(entry, recursive)


def gather(paths: Sequence[str], recursive: bool, stdin: IO[bytes]) -> list[Source]:
    """Every image the command line names, in order; UsageError for a path that does not
    exist, a folder that cannot be listed, ``-`` named twice, or no image found at all.
    Only ``-`` is read here; files are read by :func:`read_one`."""
    sources: list[Source] = []
    for text in paths:
        if text == STDIN:
            if any(source.data is not None for source in sources):
                raise UsageError("- (stdin) can be named only once")
            sources.append(Source(STDIN, data=stdin.read()))
            continue
        path = Path(text)
        if path.is_dir():
            try:
                found = list(folder_images(path, recursive))
            except OSError as ex:
                raise UsageError(f"cannot read the folder {ex.filename}: {ex.strerror}") from ex
            sources.extend(Source(str(image), file=image) for image in found)
        elif path.exists():
            sources.append(Source(text, file=path))
        else:
            raise UsageError(f"no such file or folder: {text}")
    if not sources:
        raise UsageError(f"no images found in {', '.join(paths)}")
    return sources


def read_one(source: Source, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """Read and normalise one image: ``(digit, None)``, or ``(None, error)`` with the text
    the server would answer for these bytes (or why the file could not be opened)."""
    try:
        data = source.data if source.file is None else source.file.read_bytes()
        return images.read_digit(data or b"", max_pixels), None
    except ServiceError as ex:
        return None, ex.description
    except OSError as ex:
        return None, f"cannot read the file: {ex.strerror or ex}"


def classify(
    model: OnnxModel,
    sources: Sequence[Source],
    digits: Iterable[tuple[np.ndarray | None, str | None]],
    batch_size: int,
) -> Iterator[list[Result]]:
    """Pair each source with its read digit (``digits``, in the same order), run the read
    ones through ``model`` ``batch_size`` at a time, and yield each batch's Results, one
    per source, in order."""
    pairs = zip(sources, digits, strict=True)
    while batch := list(itertools.islice(pairs, batch_size)):
        read = [digit for _, (digit, _) in batch if digit is not None]
        rows = iter(model.predict(np.stack(read)) if read else [])
        yield [
            Result(source.path, error=error)
            if digit is None
            else Result(source.path, probabilities=next(rows))
            for source, (digit, error) in batch
        ]


def row_fields(info: ModelInfo, result: Result, probabilities: bool) -> dict[str, Any]:
    """One output row: path, label, confidence, model, classifier, error (None when read),
    and with ``probabilities`` the ten of them; the prediction fields are the server's."""
    row: dict[str, Any] = {"path": result.path, "label": None, "confidence": None}
    answer = {"probabilities": [None] * len(info.labels)}
    if result.probabilities is not None:
        answer = describe(info, result.probabilities, None)
        row.update(label=answer["label"], confidence=answer["confidence"])
    row.update(model=info.name, classifier=info.classifier, error=result.error)
    if probabilities:
        row["probabilities"] = answer["probabilities"]
    return row


class JsonLines:
    """One JSON object per image and line."""

    def __init__(self, out: IO[str], info: ModelInfo, probabilities: bool, paths: list[str]):
        self._out, self._info, self._probabilities = out, info, probabilities

    def write(self, result: Result) -> None:
        """Write the row for ``result``."""
        row = row_fields(self._info, result, self._probabilities)
        self._out.write(json.dumps(row) + "\n")


class Csv:
    """A header row, then one row per image; p0..p9 columns with ``probabilities``."""

    def __init__(self, out: IO[str], info: ModelInfo, probabilities: bool, paths: list[str]):
        self._info, self._probabilities = info, probabilities
        self._writer = csv.writer(out, lineterminator="\n")
        columns = ["path", "label", "confidence", "model", "classifier", "error"]
        if probabilities:
            columns += [f"p{index}" for index in range(len(info.labels))]
        self._writer.writerow(columns)

    def write(self, result: Result) -> None:
        """Write the row for ``result``; empty cells where there is no value."""
        row = row_fields(self._info, result, self._probabilities)
        cells = row.pop("probabilities", [])
        self._writer.writerow(["" if value is None else value for value in [*row.values(), *cells]])


class Table:
    """Aligned columns for people: path, label, confidence (p0..p9), and the error."""

    def __init__(self, out: IO[str], info: ModelInfo, probabilities: bool, paths: list[str]):
        self._out, self._info, self._probabilities = out, info, probabilities
        self._width = max(len("path"), *(len(path) for path in paths))
        self._classes = len(info.labels)
        header = [f"{'path':<{self._width}}", "label", "confidence"]
        if probabilities:
            header += [f"{f'p{index}':>5}" for index in range(self._classes)]
        self._out.write("  ".join([*header, "error"]).rstrip() + "\n")

    def write(self, result: Result) -> None:
        """Write the line for ``result``."""
        row = row_fields(self._info, result, self._probabilities)
        cells = [f"{result.path:<{self._width}}"]
        if result.error is not None:
            cells += [f"{'-':>5}", f"{'-':>10}"]
            cells += [f"{'-':>5}"] * (self._classes if self._probabilities else 0)
            cells.append(result.error)
        else:
            cells += [f"{row['label']:>5}", f"{row['confidence']:>10.4f}"]
            cells += [f"{value:>5.3f}" for value in row.get("probabilities", [])]
        self._out.write("  ".join(cells).rstrip() + "\n")


WRITERS: dict[str, Callable[..., JsonLines | Csv | Table]] = {
    "table": Table,
    "jsonl": JsonLines,
    "csv": Csv,
}


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


@contextlib.contextmanager
def read_digits(
    sources: list[Source], jobs: int, max_pixels: int
) -> Iterator[Iterator[tuple[np.ndarray | None, str | None]]]:
    """Yield an iterator of :func:`read_one` results for ``sources``, in order: from a pool
    of ``jobs`` forked processes (started here, before any model session and its threads
    exist; serve.images keeps OpenCV to one thread in each), or in this process for one job
    or one image."""
    reader = functools.partial(read_one, max_pixels=max_pixels)
    if jobs == 1 or len(sources) == 1:
        yield map(reader, sources)
        return
    chunksize = max(1, min(32, len(sources) // (jobs * 8)))
    context = multiprocessing.get_context("fork")
    with context.Pool(min(jobs, len(sources))) as pool:
        yield _in_parts(pool, reader, sources, chunksize)


def _in_parts(
    pool: multiprocessing.pool.Pool,
    reader: Callable[[Source], tuple[np.ndarray | None, str | None]],
    sources: list[Source],
    chunksize: int,
) -> Iterator[tuple[np.ndarray | None, str | None]]:
    """``pool.imap(reader, sources)``, given to the pool IN_FLIGHT images at a time with the
    next part queued while one is read: the workers never wait, and at most two parts of
    digits are held however slowly the output is taken."""
    parts = (sources[start : start + IN_FLIGHT] for start in range(0, len(sources), IN_FLIGHT))
    pending: collections.deque[Iterator[tuple[np.ndarray | None, str | None]]] = collections.deque()
    for part in parts:
        pending.append(pool.imap(reader, part, chunksize=chunksize))
        if len(pending) > 1:
            yield from pending.popleft()
    while pending:
        yield from pending.popleft()


class Progress:
    """A tqdm bar on ``stream`` when it is a terminal and there are more than
    PROGRESS_THRESHOLD images; nothing otherwise. Rows written through :meth:`write` to a
    terminal clear the bar first, so that the two never share a line."""

    def __init__(self, total: int, stream: IO[str], out: IO[str]) -> None:
        self._bar: Any = None
        self._out, self._out_is_terminal = out, out.isatty()
        if total > PROGRESS_THRESHOLD and stream.isatty():
            import tqdm

            self._bar = tqdm.tqdm(total=total, file=stream, unit="image", leave=False)

    def advance(self) -> None:
        """One more image read."""
        if self._bar is not None:
            self._bar.update(1)

    def write(self, emit: Callable[[], None]) -> None:
        """Call ``emit`` (which writes rows), with the bar cleared while it runs when both
        are on one terminal."""
        if self._bar is None or not self._out_is_terminal:
            emit()
            return
        with self._bar.external_write_mode(file=self._out):
            emit()

    def close(self) -> None:
        """Take the bar off the terminal."""
        if self._bar is not None:
            self._bar.close()


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


if __name__ == "__main__":
    sys.exit(main())
