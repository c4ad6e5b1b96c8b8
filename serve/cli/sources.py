"""What the command line names: image files, folders of them, or ``-`` for stdin."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

#: File name endings (lower case) that count as images when a folder is read; a file named
#: on the command line is read whatever its name.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
STDIN = "-"


class UsageError(Exception):
    """The command line asks for something that cannot be done; exit status 2."""


@dataclasses.dataclass(frozen=True)
class Source:
    """One image to classify: how it is shown in the output, and its file or its bytes."""

    path: str
    file: Path | None = None
    data: bytes | None = None


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
