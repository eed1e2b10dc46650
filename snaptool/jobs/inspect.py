"""`snaptool inspect`: what an RDB file holds, from one pass over raw records (nothing decoded).

Memory stays flat: counters per db and type byte, and a 20-entry heap of the biggest keys. Runs of
simple records are counted by the fast scanner without building a Record for each.

With ``shards`` (``--slots``, ``--html``) every record goes through the general reader instead, one
Record each (a few µs per key), because the per-slot counters need each key: that adds two lists of
16384 ints (keys and bytes per cluster slot) and a 64-bucket histogram of record sizes.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from ..rdb.checksum import key_slot
from ..rdb.constants import encoding_name, kind_of
from ..rdb.fastscan import SCANNABLE, Run, ScanStats, type_mask
from ..rdb.items import Aux, End, Function, ModuleAux, Record, SlotInfo
from ..rdb.reader import RdbReader
from ..rdb.slots import SLOTS, SlotLayout
from ..rdb.source import Source
from ..rdb.values import module_name_of

TOP_KEYS = 20
#: How many of the fullest slots the slot report lists.
TOP_SLOTS = 10
#: Record-size histogram buckets: bucket i counts records of size 2**(i-1) … 2**i - 1 bytes.
SIZE_BUCKETS = 64


@dataclass
class DbStats:
    keys: int = 0
    expires: int = 0
    bytes: int = 0


@dataclass
class InspectReport:
    path: str
    magic: str
    version: int
    flavour: str
    size: int = 0
    checksum: str = ""
    aux: dict[str, str] = field(default_factory=dict)
    keys: int = 0
    expires: int = 0
    databases: dict[int, DbStats] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    by_encoding: dict[str, dict[str, int]] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)
    modules: dict[str, int] = field(default_factory=dict)
    slot_info: int = 0
    lru_keys: int = 0
    lfu_keys: int = 0
    biggest: list[dict] = field(default_factory=list)
    #: per-slot counters and the even split they were measured against (only with ``shards``)
    slots: SlotSpread | None = None
    #: record sizes in power-of-two buckets, see SIZE_BUCKETS (only with ``shards``)
    size_buckets: list[int] | None = None

    @property
    def writer(self) -> str:
        """"valkey 8.1.8" from the version AUX field, for people's output."""
        return next((f"{name.split('-')[0]} {self.aux[name]}" for name in ("valkey-ver", "redis-ver")
                     if name in self.aux), "an unnamed writer")

    def to_json(self) -> dict:
        data = asdict(replace(self, slots=None))  # the slot lists have their own, shorter form
        data["databases"] = {str(db): asdict(s) for db, s in sorted(self.databases.items())}
        if self.slots is None:
            del data["slots"], data["size_buckets"]
        else:
            data["slots"] = self.slots.to_json()
        return data


@dataclass
class SlotSpread:
    """Keys and serialized bytes per cluster slot, and how an even split of them would balance.

    Two flat lists of 16384 ints whatever the file size. Keys of every database count: a split
    sends them all to the shard owning their slot.
    """

    layout: SlotLayout
    keys: list[int] = field(default_factory=lambda: [0] * SLOTS)
    bytes: list[int] = field(default_factory=lambda: [0] * SLOTS)

    def shard_rows(self) -> list[dict]:
        """Per shard of the layout: its ranges, keys, bytes and their share of the totals in %."""
        total_keys, total_bytes = sum(self.keys), sum(self.bytes)
        rows = []
        for shard in self.layout.shards:
            keys = sum(sum(self.keys[s:e + 1]) for s, e in shard.ranges)
            size = sum(sum(self.bytes[s:e + 1]) for s, e in shard.ranges)
            rows.append({"name": shard.name, "slots": [[s, e] for s, e in shard.ranges],
                         "keys": keys, "bytes": size,
                         "keys_pct": round(100 * keys / total_keys, 2) if total_keys else 0.0,
                         "bytes_pct": round(100 * size / total_bytes, 2) if total_bytes else 0.0})
        return rows

    def busiest(self, top: int = TOP_SLOTS) -> list[dict]:
        """The slots holding most keys (then most bytes): where a hot hash tag shows up."""
        used = (slot for slot in range(SLOTS) if self.keys[slot])
        best = heapq.nlargest(top, used, key=lambda slot: (self.keys[slot], self.bytes[slot]))
        return [{"slot": slot, "keys": self.keys[slot], "bytes": self.bytes[slot]} for slot in best]

    def to_json(self) -> dict:
        rows = self.shard_rows()
        return {"shards": len(rows), "keys": sum(self.keys), "bytes": sum(self.bytes),
                "slots_used": SLOTS - self.keys.count(0),
                "imbalance": {"keys": imbalance([r["keys"] for r in rows]),
                              "bytes": imbalance([r["bytes"] for r in rows])},
                "by_shard": rows, "busiest": self.busiest()}


def imbalance(values: list[int]) -> float:
    """max/mean: 1.0 is a perfectly even split, 2.0 means the fullest shard holds twice its share."""
    total = sum(values)
    return round(max(values) * len(values) / total, 3) if total else 1.0


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def inspect_file(path: str | os.PathLike, *, verify_checksum: bool = True,
                 progress: Callable[[int, int], None] | None = None,
                 shards: int | None = None) -> InspectReport:
    """Summarise an RDB file; ``progress(offset, keys)`` lets callers draw progress.

    ``shards`` also counts keys and bytes per slot against ``SlotLayout.even(shards)`` and the
    record-size histogram (slower: one Record per key, see the module docstring).
    """
    spread = None if shards is None else SlotSpread(SlotLayout.even(shards))
    with RdbReader.open(path, verify_checksum=verify_checksum) as reader:
        header = reader.read_header()
        report = InspectReport(str(path), _text(header.magic), header.version, header.flavour)
        stats = ScanStats(big_threshold=0)  # report every record until the heap is full
        biggest = _Biggest(stats)
        if spread is not None:
            slot_keys, slot_bytes, sizes = spread.keys, spread.bytes, [0] * SIZE_BUCKETS
        attributed = 0  # bytes of type+key+value already given to a database
        for item in reader.items(fast=type_mask(SCANNABLE) if spread is None else None, stats=stats):
            kind = type(item)
            if kind is Run:
                db = _db(report, item.db)
                db.keys += item.keys
                db.expires += item.expires
                total = sum(stats.type_bytes)  # the run's records, prefix opcodes excluded as for Records
                db.bytes += total - attributed
                attributed = total
                report.keys += item.keys
                report.expires += item.expires
                for start, end in heapq.nlargest(TOP_KEYS, item.big, key=lambda se: se[1] - se[0]):
                    key = Source.from_bytes(item.raw[start + 1:end]).string()
                    biggest.add(end - start, key, item.db, kind_of(item.raw[start], header.flavour) or "?")
                if progress is not None:
                    progress(item.offset + item.length, report.keys)
            elif kind is Record:
                rec: Record = item
                db = _db(report, rec.db)
                db.keys += 1
                db.bytes += rec.size
                attributed += rec.size
                report.keys += 1
                if rec.expire_ms is not None:
                    db.expires += 1
                    report.expires += 1
                stats.idle += rec.idle is not None
                stats.freq += rec.freq is not None
                stats.type_keys[rec.type] += 1
                stats.type_bytes[rec.type] += rec.size
                if rec.kind == "module":
                    name = module_name_of(rec)
                    report.modules[name] = report.modules.get(name, 0) + 1
                biggest.add(rec.size, rec.key, rec.db, rec.kind)
                if spread is not None:
                    slot, size = key_slot(rec.key), rec.size
                    slot_keys[slot] += 1
                    slot_bytes[slot] += size
                    sizes[min(size.bit_length(), SIZE_BUCKETS - 1)] += 1
                if progress is not None:
                    progress(rec.offset + rec.size, report.keys)
                rec.release()
            elif kind is Aux:
                report.aux[_text(item.key)] = _text(item.value)
            elif kind is Function:
                report.functions.append(_text(item.name))
            elif kind is ModuleAux:
                report.modules.setdefault(item.module_name, 0)
            elif kind is SlotInfo:
                report.slot_info += 1
            elif kind is End:
                report.checksum = item.status
        report.size = reader.source.offset
    _type_tables(report, stats, header.flavour)
    report.lru_keys, report.lfu_keys = stats.idle, stats.freq
    report.biggest = biggest.rows()
    if spread is not None:
        report.slots, report.size_buckets = spread, sizes
    return report


def _db(report: InspectReport, db: int) -> DbStats:
    stats = report.databases.get(db)
    if stats is None:
        stats = report.databases[db] = DbStats()
    return stats


def _type_tables(report: InspectReport, stats: ScanStats, flavour: str) -> None:
    """Fold the per-type-byte counters into the by-type and by-encoding tables."""
    for t in range(256):
        keys = stats.type_keys[t]
        if not keys:
            continue
        for table, name in ((report.by_type, kind_of(t, flavour) or f"type-{t}"),
                            (report.by_encoding, encoding_name(t, flavour))):
            row = table.setdefault(name, {"keys": 0, "bytes": 0})
            row["keys"] += keys
            row["bytes"] += stats.type_bytes[t]


class _Biggest:
    """The TOP_KEYS largest records, in a min-heap whose smallest size tells the scanner what to report."""

    def __init__(self, stats: ScanStats) -> None:
        self._heap: list[tuple[int, int, bytes, int, str]] = []
        self._stats = stats
        self._seq = 0

    def add(self, size: int, key: bytes, db: int, kind: str) -> None:
        self._seq += 1
        entry = (size, self._seq, key, db, kind)
        if len(self._heap) < TOP_KEYS:
            heapq.heappush(self._heap, entry)
        elif size > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)
        else:
            return
        if len(self._heap) == TOP_KEYS:
            self._stats.big_threshold = self._heap[0][0] + 1

    def rows(self) -> list[dict]:
        return [{"key": _text(k), "db": db, "type": kind, "bytes": size}
                for size, _, k, db, kind in sorted(self._heap, reverse=True)]
