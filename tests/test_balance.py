"""The shared table of connections per worker (serve/balance.py)."""

from __future__ import annotations

import os

import pytest

from serve import balance
from serve.balance import ConnectionTally


def test_a_worker_sees_the_fewest_connections_of_the_others() -> None:
    tally = ConnectionTally()
    tally.join(1)
    assert tally.fewest_elsewhere() is None
    tally.publish(7)  # Its own count is not "elsewhere".
    assert tally.fewest_elsewhere() is None
    for number, connections in ((2, 5), (3, 2), (4, 9)):
        tally.join(number)
        tally.publish(connections)
    tally.join(1)
    assert tally.fewest_elsewhere() == 2


def test_a_worker_that_left_or_went_silent_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    tally = ConnectionTally()
    tally.join(2)
    tally.publish(3)
    tally.leave()
    tally.join(1)
    assert tally.fewest_elsewhere() is None
    tally.join(3)
    tally.publish(0)
    tally.join(1)
    assert tally.fewest_elsewhere() == 0
    monkeypatch.setattr(balance, "STALE_SECONDS", 0.0)  # Slot 3 is now too old to count.
    assert tally.fewest_elsewhere() is None


def test_forked_workers_share_the_table() -> None:
    """As gunicorn's workers do: forked from the process that made the table."""
    tally = ConnectionTally()
    child = os.fork()
    if child == 0:
        tally.join(5)
        tally.publish(4)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tally.join(6)
    assert tally.fewest_elsewhere() == 4
