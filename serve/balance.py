"""How many connections each gunicorn worker holds, in memory shared by all of them, so that
a new connection goes to the worker holding the fewest (serve/worker.py).

The table is an anonymous shared mapping made when gunicorn's master imports the worker class,
so every worker forked from it sees the same memory. Each worker writes its own slot (its
process id, how many connections it holds, and when it last wrote) and reads the others'. A
slot not written for ``STALE_SECONDS`` belongs to a worker that died or hangs and is ignored.
Reads and writes take no lock: a torn read costs at worst one less balanced accept.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

#: Slots in the table; worker ``age`` (gunicorn's spawn counter) modulo this picks one.
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
        """Take the slot of the worker numbered ``number`` (its gunicorn age), holding none."""
        self._mine = number % self._slots
        self._pid = os.getpid()
        self.publish(0)

    def publish(self, connections: int) -> None:
        """Record that this worker holds ``connections`` connections, as of now."""
        if self._mine is not None:
            offset = self._mine * _SLOT.size
            _SLOT.pack_into(self._memory, offset, self._pid, connections, time.monotonic())

    def leave(self) -> None:
        """Give the slot back (the worker is exiting)."""
        if self._mine is not None:
            _SLOT.pack_into(self._memory, self._mine * _SLOT.size, 0, 0, 0.0)
            self._mine = None

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections any other live worker holds; None when there is none."""
        oldest = time.monotonic() - STALE_SECONDS
        fewest: int | None = None
        for slot, (pid, connections, written) in enumerate(_SLOT.iter_unpack(self._memory)):
            if slot == self._mine or pid == 0 or written < oldest:
                continue
            if fewest is None or connections < fewest:
                fewest = connections
        return fewest
