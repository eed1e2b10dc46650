"""The read side of a memcached migration: every server listed and read into the ledger, then listed again.

What was copied from where is kept per key (the cas as the server printed it, and which server),
so the second listing can tell new keys and changed keys from the ones already copied, and a key
found on two servers is noticed; the flags inventory is built on the way. Nothing here writes to
the target.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from ..engines.memcached_conn import MemcachedAddress, ServerInfo
from ..engines.memcached_dump import DumpRun, LeanRun, Listing, batches
from ..engines.memcached_fetch import Columns, Result, open_fetcher
from ..engines.memcached_ring import BoundRing
from ..engines.slot_map import show_key
from .migrate_check import Item
from .migrate_fanin import fan_in
from .migrate_flags import FlagsInventory
from .migrate_ledger import NO_EXPIRY, Frame, Ledger
from .migrate_targets import now_ms

if TYPE_CHECKING:
    from .migrate_memcached import MigrateOptions

#: progress(stage, done, total or None), called from the main thread
Progress = Callable[[str, int, "int | None"], None]
_PROBLEMS_LISTED = 20


@dataclass
class SourceReport:
    """What happened to the keys of one server."""

    server: str
    version: str
    enumeration: str  # "metadump hash", "metadump all" or "mgdump hash"
    fetch: str  # "mg" or "gets"
    why: str = ""  # why that listing was chosen
    listed: int = 0  # keys the first listing found
    passes: int = 0  # walks of the first listing (metadump all walks again until one finds nothing new)
    repeated: int = 0  # listed more than once by those walks (dropped)
    read: int = 0  # read and recorded in the first pass
    expired: int = 0  # expired between listing and reading
    vanished: int = 0  # deleted or evicted between listing and reading
    failed: int = 0  # the server refused to read them (listed as problems)
    new: int = 0  # written during the run, found by the second listing, copied
    changed: int = 0  # changed during the run (another cas), copied again
    gone_after_read: int = 0  # read, then gone from the second listing (deleted or expired; still copied)
    end_inferred: bool = False  # a listing ended by a silence (no END line before 1.5.4): it may be incomplete
    seconds: float = 0.0


def _token(cas: bytes, server: int) -> bytes:
    """What the copied map keeps per key: the cas as printed, with the server's index in front
    unless it is the first server (so a million keys of one server cost no extra bytes)."""
    return cas if server == 0 else b"%d/%b" % (server, cas)


def _server(token: bytes) -> int:
    return int(token.split(b"/", 1)[0]) if b"/" in token else 0


class Reader:
    """The read side of a run: the ledgers, what was copied from where, the flags inventory."""

    def __init__(self, options: MigrateOptions, work: str, progress: Progress | None,
                 ring: BoundRing | None = None) -> None:
        self.options = options
        self.ring = ring
        self.work = work
        self.progress = progress
        self.first = Ledger(os.path.join(work, "ledger-1"))
        self.second = Ledger(os.path.join(work, "ledger-2"))
        self.copied: dict[bytes, bytes] = {}  # key -> cas token of the copy recorded last (see _token)
        self.duplicates: dict[bytes, set[int]] = {}
        self.superseded: set[bytes] = set()  # keys whose first copy the delta pass replaced
        self.expired: set[bytes] = set()  # keys found expiring, so the delta pass does not count them twice
        self.late_duplicates = 0  # keys the delta pass found on a second server
        self.inventory = FlagsInventory()
        self.problems: list[str] = []

    def note(self, what: str) -> None:
        if len(self.problems) < _PROBLEMS_LISTED:
            self.problems.append(what)

    def read_servers(self, servers: list[tuple[MemcachedAddress, ServerInfo, SourceReport]]) -> None:
        """Every server listed and read, up to ``--workers`` of them at once; what they return is
        recorded here, in this thread alone, so a key on two servers is noticed whatever the order."""
        feeds = [functools.partial(self._fetch_server, index, address, info, report)
                 for index, (address, info, report) in enumerate(servers)]
        for index, (batch, results, columns) in fan_in(feeds, self.options.workers):
            address, info, report = servers[index]
            if columns is None or not self._record_clean(index, batch, columns, report):
                self._record(index, info, batch, results if columns is None else list(zip(*columns)), report,
                             self.first, delta=False)
            if self.progress is not None:
                self.progress(f"read {address}", report.read, info.items or None)

    def _fetch_server(self, index: int, address: MemcachedAddress, info: ServerInfo,
                      report: SourceReport) -> Iterator[tuple[DumpRun, list[Result] | None, Columns | None]]:
        """One server's batches as read (on a fetch thread): nothing shared is touched but its report."""
        started = time.monotonic()
        listed = 0

        def runs() -> Iterator[DumpRun]:
            nonlocal listed
            listing = Listing(address, info, os.path.join(self.work, f"dump-{index}"), mode=self.options.enumerate,
                              stall_timeout=self.options.timeout, silence=self.options.dump_silence)
            for run in listing.runs():
                listed += len(run)
                yield from batches(run)
            report.end_inferred |= listing.inferred_end
            report.passes = listing.walked
            report.repeated += listing.repeated

        fetcher = open_fetcher(address, info, self.options.fetch, self.options.workers, self.options.timeout)
        try:
            yield from fetcher.fetch(runs())
        finally:
            fetcher.close()
        report.listed = listed
        report.seconds = round(time.monotonic() - started, 3)

    def start_delta(self, index: int, address: MemcachedAddress, info: ServerInfo) -> Listing:
        """Start the second listing; it drains into its spool while the caller writes the target."""
        # compared by cas, which mgdump does not print: its servers (1.6.19+) are walked with metadump hash
        mode = "hash" if self.options.enumerate == "mgdump" else self.options.enumerate
        return Listing(address, info, os.path.join(self.work, f"delta-{index}"), mode=mode,
                       stall_timeout=self.options.timeout, silence=self.options.dump_silence)

    def finish_delta(self, index: int, address: MemcachedAddress, info: ServerInfo, listing: Listing,
                     report: SourceReport) -> None:
        """Compare the second listing with the first pass; read what is new or has another cas."""
        seen_again = 0

        def wanted() -> Iterator[DumpRun]:
            nonlocal seen_again
            copied, duplicates = self.copied, self.duplicates
            for run in listing.runs(lean=True):
                before = list(map(copied.get, run.keys))
                now = run.cas if index == 0 else [_token(cas, index) for cas in run.cas]
                seen_again += len(before)
                if before == now:  # nothing changed since the first pass: the usual case
                    continue
                pick = []
                for at in [at for at, (old, new) in enumerate(zip(before, now)) if old != new]:
                    prev = before[at]
                    if prev is None:
                        seen_again -= 1
                        pick.append(at)
                    elif run.keys[at] in duplicates:
                        # keys on several servers keep the copies of the first pass: which one is
                        # written is the duplicate policy's choice, not the order of the passes
                        seen_again -= _server(prev) != index
                    elif _server(prev) != index:
                        seen_again -= 1
                        pick.append(at)  # written to a second server during the run
                    else:
                        pick.append(at)  # another cas: changed since it was read
                if pick:
                    yield from batches(run.parse(pick) if isinstance(run, LeanRun) else run.select(pick))

        try:
            fetcher = open_fetcher(address, info, self.options.fetch, self.options.workers, self.options.timeout)
            try:
                for batch, results, columns in fetcher.fetch(wanted()):
                    self._record(index, info, batch, results if columns is None else list(zip(*columns)), report,
                                 self.second, delta=True)
            finally:
                fetcher.close()
        finally:
            listing.close()
        report.end_inferred |= listing.inferred_end
        report.gone_after_read = max(0, report.read - seen_again)

    def _record_clean(self, index: int, batch: DumpRun, columns: Columns, report: SourceReport) -> bool:
        """The usual batch of the first pass, in bulk: every key found, none seen before. False
        when the batch needs the careful path."""
        keys, copied = batch.keys, self.copied
        if not copied.keys().isdisjoint(keys):
            return False
        values, flags, ttls, cas = columns
        now = now_ms()
        copied.update(zip(keys, cas if index == 0 else [_token(c, index) for c in cas]))
        self.inventory.add(keys, flags, values, not batch.unsafe)
        deadlines = [NO_EXPIRY] * len(keys) if ttls.count(-1) == len(ttls) else \
            [NO_EXPIRY if t < 0 else now + t * 1000 for t in ttls]
        self.first.append(Frame(index, keys, values, flags, cas, deadlines))
        report.read += len(keys)
        return True

    def _record(self, index: int, info: ServerInfo, batch: DumpRun, results: list, report: SourceReport,
                ledger: Ledger, *, delta: bool) -> None:
        now = now_ms()
        clock = info.clock()
        copied, duplicates, inventory = self.copied, self.duplicates, self.inventory
        keys: list[bytes] = []
        values: list[bytes] = []
        flags: list[int] = []
        cas: list[bytes] = []
        deadlines: list[int] = []
        for key, exp, result in zip(batch.keys, batch.exps, results):
            if type(result) is tuple:
                value, item_flags, ttl, item_cas = result
                if ttl == 0:  # expires within the second: never written with a TTL of 0
                    if key not in self.expired:
                        self.expired.add(key)
                        report.expired += 1
                    continue
                prev = copied.get(key)
                if delta and item_flags and self.options.flags.mode is None:
                    report.failed += 1  # the decision on flags was taken before: it cannot be written
                    self.note(f"{report.server}: key {show_key(key)} was written during the run with flags "
                              f"{item_flags}, and no --flags was given")
                    continue
                if prev is not None and _server(prev) != index:
                    if delta and self.options.on_duplicate == "error" and \
                            self._ring_choice(key, {_server(prev), index}) is None:
                        report.failed += 1
                        self.note(f"{report.server}: key {show_key(key)} was written to a second server during the "
                                  "run, and no --on-duplicate was given")
                        continue
                    duplicates.setdefault(key, {_server(prev)}).add(index)
                    if delta:
                        self.late_duplicates += 1
                elif prev is not None and not delta:
                    report.repeated += 1
                    continue
                elif prev is not None:
                    self.superseded.add(key)
                    report.changed += 1
                if delta and prev is None:
                    report.new += 1
                copied[key] = _token(item_cas, index)
                keys.append(key)
                values.append(value)
                flags.append(item_flags)
                cas.append(item_cas)
                deadlines.append(NO_EXPIRY if ttl < 0 else now + ttl * 1000)
            elif result is None:
                if exp >= 0 and exp <= clock + 1:
                    if key not in self.expired:
                        self.expired.add(key)
                        report.expired += 1
                elif not delta:
                    report.vanished += 1
            else:
                report.failed += 1
                self.note(f"{report.server}: key {show_key(key)} could not be read: {result}")
        if not delta:
            report.read += len(keys)
        inventory.add(keys, flags, values)
        ledger.append(Frame(index, keys, values, flags, cas, deadlines))

    def _ring_choice(self, key: bytes, servers: set[int]) -> int | None:
        """The server the ring maps ``key`` to, when it holds a copy (None: no ring, or a server
        holding neither copy, whose clients then miss the key)."""
        if self.ring is None:
            return None
        named = self.ring.server(key)
        return named if named in servers else None

    def unresolved(self) -> list[bytes]:
        """Duplicated keys whose copy the ring (if any) does not choose."""
        return [key for key, servers in self.duplicates.items() if self._ring_choice(key, servers) is None]

    def winners(self, policy: str) -> dict[bytes, int]:
        """The server whose copy of each duplicated key is written: the one the ring maps it to,
        else the first or last holding it (by ``--from`` order)."""
        pick = min if policy == "first" else max
        out = {}
        for key, servers in self.duplicates.items():
            chosen = self._ring_choice(key, servers)
            out[key] = pick(servers) if chosen is None else chosen
        return out

    def plan(self, options: MigrateOptions, winners: dict[bytes, int], *, first: bool = True,
             second: bool = True) -> Iterator[tuple[list[Item], list[tuple[bytes, int]]]]:
        """What to write, frame by frame: items plus the side-hash fields (target key, flags). The
        first pass's copies of keys the delta pass read again are left out."""
        prefix, policy = options.key_prefix, options.flags
        ledgers = ([(self.first, self.superseded)] if first else []) + ([(self.second, set())] if second else [])
        for ledger, replaced in ledgers:
            for frame in ledger.frames():
                keys, values, flags, deadlines = frame.keys, frame.values, frame.flags, frame.deadlines
                if (replaced and not replaced.isdisjoint(keys)) or (winners and not winners.keys().isdisjoint(keys)):
                    keep = [at for at, key in enumerate(keys)
                            if key not in replaced and winners.get(key, frame.server) == frame.server]
                    keys, values = [keys[at] for at in keep], [values[at] for at in keep]
                    flags, deadlines = [flags[at] for at in keep], [deadlines[at] for at in keep]
                names = [prefix + key for key in keys] if prefix else keys
                if policy.mode == "envelope":
                    values = [policy.value(value, f) for value, f in zip(values, flags)]
                fields = [(name, f) for name, f in zip(names, flags) if f] if policy.mode == "hash" else []
                yield list(zip(names, values, deadlines, flags)), fields

    def remove(self) -> None:
        self.first.remove()
        self.second.remove()


__all__ = ["Progress", "Reader", "SourceReport"]
