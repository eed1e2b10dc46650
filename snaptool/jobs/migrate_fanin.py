"""Several feeds read at once, their items handed to one consuming thread.

The servers of a sharded pool are listed and read independently, so their network waits can
overlap; what they yield is recorded by the caller alone, in one thread, so the bookkeeping that
spots a key on two servers needs no locks and behaves as if the servers were read in turn.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Callable, Generator, Iterator, Sequence, TypeVar

T = TypeVar("T")
_DONE = object()
_POLL = 0.2  # seconds between looks at the stop flag while the consumer is behind
_JOIN_WAIT = 5.0  # seconds the feeds get to end once the consumer stopped


Feed = Callable[[], Generator[T, None, None]]


def fan_in(feeds: Sequence[Feed[T]], limit: int, depth: int = 4) -> Iterator[tuple[int, T]]:
    """``(feed index, item)`` from every feed, at most ``limit`` feeds running at once, at most
    ``depth`` items per feed waiting. A feed's error is raised here; leaving the loop early stops
    the other feeds (their iterators are closed, so their connections are)."""
    if len(feeds) == 1 or limit == 1:
        for index, feed in enumerate(feeds):
            for item in feed():
                yield index, item
        return
    out: queue.Queue = queue.Queue(maxsize=depth * len(feeds))
    stop = threading.Event()
    slots = threading.Semaphore(limit)

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def run(index: int, feed: Feed[T]) -> None:
        with slots:
            try:
                if stop.is_set():
                    return
                with contextlib.closing(feed()) as items:
                    for item in items:
                        if not put((index, item, None)):
                            return
            except BaseException as exc:  # noqa: BLE001 - raised in the consuming thread
                put((index, None, exc))
                return
        put((index, _DONE, None))

    threads = [threading.Thread(target=run, args=(index, feed), name=f"feed {index}", daemon=True)
               for index, feed in enumerate(feeds)]
    for thread in threads:
        thread.start()
    try:
        remaining = len(feeds)
        while remaining:
            index, item, error = out.get()
            if error is not None:
                raise error
            if item is _DONE:
                remaining -= 1
                continue
            yield index, item
    finally:
        stop.set()
        # a feed inside a network wait (a read, a crawler still busy) notices the flag only when
        # that wait ends: after an error or Ctrl-C it is not awaited longer than this (daemon threads)
        deadline = time.monotonic() + _JOIN_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


__all__ = ["fan_in"]
