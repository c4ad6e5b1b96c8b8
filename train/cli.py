"""What ``python -m train`` and ``python -m export`` share: the start of a run once its
command line has been parsed."""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from train.quiet import import_tensorflow


def start(module: str, arguments: Sequence[str] | None) -> str:
    """Log at INFO to stderr, import TensorFlow without its start-up noise, and return the
    command as it would be typed again (``python -m <module> ...``), for the model's
    provenance. ``arguments`` are those given to ``main``; None means the process's own."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import_tensorflow()
    command_line = sys.argv[1:] if arguments is None else list(arguments)
    return shlex.join(["python", "-m", module, *command_line])


def program_name(module: str, script: str) -> str:
    """The name to show in usage lines: ``script`` (the console script, ``mnist-train``) when
    the process was started as it, else ``python -m <module>``."""
    return script if Path(sys.argv[0]).name == script else f"python -m {module}"
