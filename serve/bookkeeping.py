"""Per-request bookkeeping (Prometheus observations, access-log lines) held in memory while a
worker is busy and written out in batches.

Written out request by request, a ``/predict``'s 13 metric writes (each to a file shared
with the other workers) and its log line cost about 0.1 ms of worker CPU; held and written
in batches, about 0.04 ms (Cost per request in the README). The keep-alive worker
(serve/worker.py) calls :func:`hold`, then :func:`flush` whenever nothing else is waiting
for it: before it sends an answer with no other request ready (so a client that waits for
its answer finds its request counted and logged), before it waits for work, and when it
exits; under load, :func:`flush_if_overdue` before each request, so nothing waits much
longer than ``MAX_DELAY`` seconds plus the request in progress. ``GET /metrics`` flushes
too. Anywhere else (tests, another WSGI server) nothing is held: each item is written out
the moment it is added, as before.

A worker killed with SIGKILL (or stuck past the arbiter's timeout) loses what it held: the
bookkeeping of requests answered at most ``MAX_DELAY`` seconds before the one in progress.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

#: Under load, held items are written out before the first request that starts this many
#: seconds or more after the oldest of them was added.
MAX_DELAY = 0.1

log = logging.getLogger(__name__)
Item = TypeVar("Item")


@dataclasses.dataclass
class _State:
    holding: bool = False
    #: When the oldest item held now was added (``time.monotonic``); None when none is.
    since: float | None = None


_STATE = _State()


class Deferred(Generic[Item]):
    """Items of one kind and the function that writes a batch of them out."""

    def __init__(self, write: Callable[[list[Item]], None]) -> None:
        self._write = write
        self._items: list[Item] = []
        _QUEUES.add(self)

    def add(self, *items: Item) -> None:
        """Write ``items`` out now, or hold them while a worker holds bookkeeping."""
        if not _STATE.holding:
            self._write(list(items))
            return
        self._items.extend(items)
        if _STATE.since is None:
            _STATE.since = time.monotonic()

    def flush(self) -> None:
        """Write out what is held; a failure is logged, and the items dropped."""
        items, self._items = self._items, []
        if not items:
            return
        try:
            self._write(items)
        except Exception:
            log.exception("Could not write %d held bookkeeping items", len(items))


_QUEUES: weakref.WeakSet[Deferred[Any]] = weakref.WeakSet()


def hold() -> None:
    """From now on, in this process, hold items until :func:`flush`."""
    _STATE.holding = True


def release() -> None:
    """Write out what is held and write each item out as it is added again."""
    flush()
    _STATE.holding = False


def held() -> bool:
    """Whether anything is held."""
    return _STATE.since is not None


def flush_if_overdue() -> None:
    """Write out everything held once the oldest item has waited ``MAX_DELAY`` seconds."""
    since = _STATE.since
    if since is not None and time.monotonic() - since >= MAX_DELAY:
        flush()


def flush() -> None:
    """Write out everything held."""
    _STATE.since = None
    for queue in list(_QUEUES):
        queue.flush()
