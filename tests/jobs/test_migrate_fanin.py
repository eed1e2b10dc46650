"""fan_in: several feeds read on threads, consumed on one; errors and early exits stop every feed."""

from __future__ import annotations

import threading

import pytest

from snaptool.jobs.migrate_fanin import fan_in


def test_every_item_arrives_in_feed_order_and_the_limit_holds() -> None:
    lock = threading.Lock()
    running, peak = 0, 0

    def feed(n: int):  # noqa: ANN202
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            for i in range(200):
                yield n, i
        finally:
            with lock:
                running -= 1

    got: dict[int, list[int]] = {}
    for index, (n, i) in fan_in([lambda n=n: feed(n) for n in range(5)], limit=2, depth=1):
        assert index == n
        got.setdefault(n, []).append(i)
    assert got == {n: list(range(200)) for n in range(5)}
    assert peak <= 2


def test_an_error_is_raised_and_the_other_feeds_are_closed() -> None:
    closed = threading.Event()

    def endless():  # noqa: ANN202
        try:
            while True:
                yield "x"
        finally:
            closed.set()

    def broken():  # noqa: ANN202
        yield "y"
        raise OSError("server gone")

    with pytest.raises(OSError, match="server gone"):
        for _ in fan_in([endless, broken], limit=2):
            pass
    assert closed.is_set()


def test_leaving_early_closes_the_feeds() -> None:
    closed = []

    def feed(n: int):  # noqa: ANN202
        try:
            yield from range(10_000)
        finally:
            closed.append(n)

    items = fan_in([lambda: feed(0), lambda: feed(1)], limit=2)
    next(items)
    items.close()
    assert sorted(closed) == [0, 1]


def test_an_error_is_raised_without_waiting_for_a_feed_stuck_in_a_network_wait() -> None:
    """One feed fails while another sits in a long blocking call (a read with a 60 s timeout):
    the error comes out while that call still runs."""
    released = threading.Event()

    def stuck():  # noqa: ANN202
        yield "first"
        released.wait(60)  # a recv that has not timed out yet
        yield "never"

    def failing():  # noqa: ANN202
        yield "one"
        raise ConnectionResetError("the server went away")

    timer = threading.Timer(30, released.set)  # the read's own end, long after fan_in's 5 s of grace
    timer.start()
    try:
        with pytest.raises(ConnectionResetError, match="went away"):
            for _ in fan_in([stuck, failing], limit=2):
                pass
        assert not released.is_set()  # still waiting: fan_in did not sit behind it
    finally:
        timer.cancel()
        released.set()
