"""The rows written for classified images (table, jsonl, csv) and the progress bar."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import IO, Any

from serve.api.predict import describe
from serve.cli.reading import Result
from serve.model.runtime import ModelInfo

FORMATS = ("table", "jsonl", "csv")
#: More images than this get a progress bar (on stderr, and only when it is a terminal).
PROGRESS_THRESHOLD = 100


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
