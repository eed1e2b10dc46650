"""Backups and prunes of one repository within one scheduler, kept out of each other's way.

A backup holds a shared repository lease and a prune needs the exclusive one, so a prune started
while another job is backing up into the same repository would wait or fail. The scheduler knows
better. A prune asked for while backups into its repository are still running is *deferred*. The
last of those backups to end runs it, so the prune never waits for a lease. A backup that starts
while a prune runs waits for that prune, which is short, instead of failing on the lock.

Jobs that share a repository share its retention (the config enforces this), so one pending prune
per repository is enough: a later request replaces an earlier one.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


class Repositories:
    """Per repository: backups running, a prune running, a prune waiting for the backups to end."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._backups: Counter[str] = Counter()
        self._pruning: set[str] = set()
        self._pending: dict[str, Callable[[], bool]] = {}

    @contextlib.contextmanager
    def backing_up(self, repository: str) -> Iterator[None]:
        """Around a backup: waits while this scheduler prunes ``repository``."""
        with self._cond:
            while repository in self._pruning:
                self._cond.wait()
            self._backups[repository] += 1
        try:
            yield
        finally:
            with self._cond:
                self._backups[repository] -= 1
                self._cond.notify_all()

    def request_prune(self, repository: str, prune: Callable[[], bool]) -> int:
        """Ask for ``prune`` to run once no backup into ``repository`` is running; returns how many are
        still running (0: call run_pending now)."""
        with self._cond:
            self._pending[repository] = prune
            return self._backups[repository]

    def run_pending(self, repository: str) -> bool:
        """Run the pending prune of ``repository`` if no backup into it is running (call after each
        backup ends). False when a prune that ran here failed."""
        ok = True
        while True:
            with self._cond:
                if self._backups[repository] or repository in self._pruning or repository not in self._pending:
                    return ok
                prune = self._pending.pop(repository)
                self._pruning.add(repository)
            try:
                ok = prune() and ok
            finally:
                with self._cond:
                    self._pruning.discard(repository)
                    self._cond.notify_all()
