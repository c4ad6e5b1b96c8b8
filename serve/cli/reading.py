"""Reading the named images in parallel worker processes and classifying them in batches."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import multiprocessing
import multiprocessing.pool
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from serve import images
from serve.cli.sources import Source
from serve.errors import ServiceError
from serve.model.runtime import OnnxModel

DEFAULT_BATCH_SIZE = 256
#: Images handed to the decode workers at a time (two such parts at most are in flight).
IN_FLIGHT = 2048


@dataclasses.dataclass(frozen=True)
class Result:
    """What became of one image: its probabilities, or the error that stopped it."""

    path: str
    probabilities: np.ndarray | None = None
    error: str | None = None


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
