"""How many connections each gunicorn worker holds, in memory shared by all of them, so that
a new connection goes to the worker holding the fewest (serve/worker.py).

The table is an anonymous shared mapping made when gunicorn's master imports the worker class,
so every worker forked from it sees the same memory. Each worker takes a free slot and writes
there its process id, how many connections it holds, and when it last wrote; it reads the
others'. A slot not written for ``STALE_SECONDS`` belongs to a worker that died or hangs: it is
ignored, and free to take. Reads and writes take no lock: a torn read costs at worst one less
balanced accept.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

#: Slots in the table: more than the workers that can be alive at once.
SLOTS = 64
#: A slot older than this is a dead or hung worker's.
STALE_SECONDS = 3.0
_SLOT = struct.Struct("qqd")  # process id, connections held, time.monotonic() of the write


class ConnectionTally:
    """The shared table of connections held per worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._memory = mmap.mmap(-1, slots * _SLOT.size)  # MAP_SHARED: forks share it.
        self._slots = slots
        self._mine: int | None = None
        self._pid = 0

    def join(self, number: int) -> None:
        """Take a free slot for this process, holding no connection. ``number`` (the worker's
        gunicorn age) says where to start looking, so that workers starting together do not
        pick the same one."""
        self._pid = os.getpid()
        oldest = time.monotonic() - STALE_SECONDS
        for step in range(self._slots):
            slot = (number + step) % self._slots
            pid, _, written = _SLOT.unpack_from(self._memory, slot * _SLOT.size)
            if pid in (0, self._pid) or written < oldest:
                break
        else:
            slot = number % self._slots  # All taken: share one (a less balanced accept).
        self._mine = slot
        self.publish(0)

    def publish(self, connections: int) -> None:
        """Record that this worker holds ``connections`` connections, as of now."""
        if self._mine is not None:
            offset = self._mine * _SLOT.size
            _SLOT.pack_into(self._memory, offset, self._pid, connections, time.monotonic())

    def leave(self) -> None:
        """Give the slot back (the worker is exiting), unless another process took it."""
        if self._mine is not None:
            offset = self._mine * _SLOT.size
            if _SLOT.unpack_from(self._memory, offset)[0] == self._pid:
                _SLOT.pack_into(self._memory, offset, 0, 0, 0.0)
            self._mine = None

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections any other live worker holds; None when there is none."""
        oldest = time.monotonic() - STALE_SECONDS
        fewest: int | None = None
        for pid, connections, written in _SLOT.iter_unpack(self._memory):
            if pid in (0, self._pid) or written < oldest:
                continue
            if fewest is None or connections < fewest:
                fewest = connections
        return fewest
