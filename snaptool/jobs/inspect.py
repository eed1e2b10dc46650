"""`snaptool inspect`: what an RDB file holds, from one pass over raw records (nothing decoded).

Memory stays flat: counters per db, type and encoding, and a 20-entry heap of the biggest keys.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..rdb.items import Aux, End, Function, Header, ModuleAux, Record, SlotInfo
from ..rdb.reader import RdbReader

TOP_KEYS = 20


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

    def to_json(self) -> dict:
        data = asdict(self)
        data["databases"] = {str(db): asdict(s) for db, s in sorted(self.databases.items())}
        return data


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _library_name(code: bytes) -> str:
    first = code.split(b"\n", 1)[0]
    for part in first.split():
        if part.startswith(b"name="):
            return _text(part[5:])
    return _text(first[:60])


def inspect_file(path: str | os.PathLike, *, verify_checksum: bool = True,
                 on_record: Callable[[Record], None] | None = None) -> InspectReport:
    """Summarise an RDB file; ``on_record`` lets callers (progress bars) watch the pass."""
    with RdbReader.open(path, verify_checksum=verify_checksum) as reader:
        items = reader.items()
        header = next(items)
        assert isinstance(header, Header)
        report = InspectReport(str(path), _text(header.magic), header.version, header.flavour)
        heap: list[tuple[int, int, bytes, int, str]] = []
        seq = 0
        for item in items:
            kind = type(item)
            if kind is Record:
                rec: Record = item
                size = rec.size
                db = report.databases.get(rec.db)
                if db is None:
                    db = report.databases[rec.db] = DbStats()
                db.keys += 1
                db.bytes += size
                report.keys += 1
                if rec.expire_ms is not None:
                    db.expires += 1
                    report.expires += 1
                if rec.idle is not None:
                    report.lru_keys += 1
                if rec.freq is not None:
                    report.lfu_keys += 1
                for table, name in ((report.by_type, rec.kind), (report.by_encoding, rec.encoding)):
                    entry = table.get(name)
                    if entry is None:
                        entry = table[name] = {"keys": 0, "bytes": 0}
                    entry["keys"] += 1
                    entry["bytes"] += size
                if rec.kind == "module":
                    name = rec.value().name
                    report.modules[name] = report.modules.get(name, 0) + 1
                seq += 1
                entry = (size, seq, rec.key, rec.db, rec.kind)
                if len(heap) < TOP_KEYS:
                    heapq.heappush(heap, entry)
                elif size > heap[0][0]:
                    heapq.heapreplace(heap, entry)
                if on_record is not None:
                    on_record(rec)
                rec.release()
            elif kind is Aux:
                report.aux[_text(item.key)] = _text(item.value)
            elif kind is Function:
                report.functions.append(_library_name(item.code))
            elif kind is ModuleAux:
                report.modules.setdefault(item.module_name, 0)
            elif kind is SlotInfo:
                report.slot_info += 1
            elif kind is End:
                report.checksum = item.status
        report.size = reader.source.offset
    report.biggest = [{"key": _text(k), "db": db, "type": kind, "bytes": size}
                      for size, _, k, db, kind in sorted(heap, reverse=True)]
    return report
