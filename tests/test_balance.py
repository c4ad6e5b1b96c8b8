"""The shared table of connections per worker (serve/balance.py), with forked processes
standing in for gunicorn's workers."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from serve import balance
from serve.balance import ConnectionTally


def in_child(action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child, as a gunicorn worker forked from the master."""
    child = os.fork()
    if child == 0:
        try:
            action()
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def worker(tally: ConnectionTally, number: int, connections: int, leave: bool = False) -> None:
    def act() -> None:
        tally.join(number)
        tally.publish(connections)
        if leave:
            tally.leave()

    in_child(act)


def test_a_worker_sees_the_fewest_connections_of_the_others() -> None:
    tally = ConnectionTally()
    tally.join(1)
    assert tally.fewest_elsewhere() is None
    tally.publish(0)  # Its own count is not "elsewhere".
    for number, connections in ((2, 5), (3, 2), (4, 9)):
        worker(tally, number, connections)
    assert tally.fewest_elsewhere() == 2


def test_workers_with_the_same_number_take_different_slots() -> None:
    """gunicorn's age modulo the table size can repeat while an old worker lives on."""
    tally = ConnectionTally(slots=4)
    worker(tally, 1, 6)
    worker(tally, 5, 3)  # 5 % 4 == 1: slot 1 is taken, so it takes the next.
    tally.join(1)
    assert tally.fewest_elsewhere() == 3


def test_a_worker_that_left_or_went_silent_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    tally = ConnectionTally()
    worker(tally, 2, 3, leave=True)
    tally.join(1)
    assert tally.fewest_elsewhere() is None
    worker(tally, 3, 0)  # Exits without leaving, as after kill -9.
    assert tally.fewest_elsewhere() == 0
    monkeypatch.setattr(balance, "STALE_SECONDS", 0.0)  # Its slot is now too old to count.
    assert tally.fewest_elsewhere() is None
