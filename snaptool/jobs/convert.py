"""Rewrite an RDB file for a target engine: passthrough where it can, re-encode where it must.

Records whose type the target loads are copied byte for byte; the rest are decoded and rebuilt by
the encoder in the target's encodings. What the target cannot hold at all (hash field TTLs before
RDB 12, functions before 10, streams before 9, modules before 8) is refused with the affected keys
unless ``allow_lossy`` is set, in which case only that part is dropped and counted.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

Progress = Callable[[int, int], None]

from ..errors import LossyConversionError, RdbError
from ..rdb.encoder import encode_value
from ..rdb import constants as C
from ..rdb.fastscan import Run, type_mask
from ..rdb.items import Aux, End, Function, ModuleAux, Record, ResizeDb, SelectDb, SlotImport, SlotInfo
from ..rdb.reader import RdbReader, open_input
from ..rdb.targets import Target, rdb_target
from ..rdb.values import is_empty, module_name_of
from ..rdb.writer import RdbWriter, can_pass_through, header_aux
from ..storage.atomic import atomic_output

_KEYS_LISTED = 1000


@dataclass
class ConvertReport:
    source: str
    source_version: int
    target: str
    target_version: int
    keys: int = 0
    passthrough: int = 0
    reencoded: int = 0
    #: empty collections left out (loaders skip them; old ones crash on them)
    empty_skipped: int = 0
    #: hash fields already expired, left out where a downgrade drops field TTLs
    expired_fields_dropped: int = 0
    functions: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    checksum: str = ""
    #: what the target could not hold: reason -> count (only non-empty with allow_lossy)
    dropped: dict[str, int] = field(default_factory=dict)
    reencoded_by_type: dict[str, int] = field(default_factory=dict)


class _Losses:
    """What a conversion would lose, by reason, with the first keys affected."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.keys: list[bytes] = []

    def add(self, reason: str, key: bytes | None = None) -> None:
        self.counts[reason] += 1
        if key is not None and len(self.keys) < _KEYS_LISTED:
            self.keys.append(key)

    def error(self, target: Target) -> LossyConversionError:
        what = ", ".join(f"{n} {reason}" for reason, n in self.counts.items())
        shown = ", ".join(repr(k)[1:] for k in self.keys[:10])
        more = f" (first keys: {shown})" if shown else ""
        return LossyConversionError(
            f"{target.name} (RDB {target.rdb_version}) cannot hold {what}{more}; "
            f"--allow-lossy drops only that part", self.keys)


def convert_stream(inp: BinaryIO, out: BinaryIO, target: Target | None = None, *,
                   allow_lossy: bool = False, verify_checksum: bool = True, path: str | None = None,
                   progress: Progress | None = None,
                   spill_threshold: int | None = None) -> ConvertReport:
    """Convert one RDB stream into another; see :func:`convert` for the file version.

    ``progress(offset, keys)`` is called as the input is consumed; ``spill_threshold``: records
    larger than this many bytes are kept in a temporary file.
    """
    reader = RdbReader(inp, path=path, verify_checksum=verify_checksum, spill_threshold=spill_threshold)
    header = reader.read_header()
    target = target or rdb_target(header.version)
    items = reader.items(fast=_passthrough_mask(target))
    report = ConvertReport(path or "<stream>", header.version, target.name, target.rdb_version)
    losses = _Losses()
    now_ms = int(time.time() * 1000)
    writer = RdbWriter(out, target)
    v = target.rdb_version
    aux: list[Aux] = []
    started = False
    pending_db: list[int | None] = [None, None, None]  # db, size, expires: SELECTDB not yet written
    written_db = None

    def start() -> None:
        nonlocal started
        if not started:
            writer.header(header_aux(aux, header, target))
            started = True

    def enter_db(db: int) -> None:
        nonlocal written_db
        start()
        if db != written_db:
            size = pending_db[1] if pending_db[0] == db else None
            writer.select_db(db, size, pending_db[2] if size is not None else None)
            written_db = db

    for item in items:
        kind = type(item)
        if kind is Run:
            enter_db(item.db)
            writer.raw(item.raw)
            report.keys += item.keys
            report.passthrough += item.keys
            if progress is not None:
                progress(item.offset + len(item.raw), report.keys)
        elif kind is Record:
            record: Record = item
            enter_db(record.db)
            report.keys += 1
            _write_record(record, writer, target, losses, report, now_ms)
            if progress is not None:
                progress(record.offset + record.size, report.keys)
            record.release()
        elif kind is Aux:
            if not started:
                aux.append(item)
            elif item.key == b"lua" and 7 <= v < 10:
                writer.aux(item.key, item.value)  # 5.0-6.2 cached scripts, after the keyspace
        elif kind is SelectDb:
            pending_db = [item.db, None, None]
        elif kind is ResizeDb:
            pending_db[1], pending_db[2] = item.db_size, item.expires_size
        elif kind is Function:
            start()
            report.functions += 1
            if v >= 10:
                writer.function(item.code)
            else:
                losses.add("functions")
        elif kind is ModuleAux:
            start()
            if v >= 9:
                writer.module_aux(item.raw)
            else:
                losses.add(f"module aux data ({item.module_name})")
        elif kind is SlotImport:
            start()
            if v >= 80:
                writer.slot_import(item.raw)
            else:
                losses.add("Valkey slot-import states")
        elif kind is SlotInfo:
            continue  # a sizing hint, regenerated by jobs that know the layout; never copied stale
        elif kind is End:
            start()
            report.checksum = item.status
    if losses.counts and not allow_lossy:
        raise losses.error(target)
    report.dropped = dict(losses.counts)
    writer.finish()
    report.bytes_in = reader.source.offset
    report.bytes_out = writer.bytes_written
    return report


_SECONDS_RANGE = range(-(1 << 31), 1 << 31)  # RDB 1-2 store expiries as 32-bit seconds


def _passthrough_mask(target: Target) -> bytes | None:
    """Types whose records may be copied in bulk runs (RDB 9+: every prefix opcode is kept)."""
    if target.rdb_version < 9:
        return None
    return type_mask({t for t in C.types_for_version(target.rdb_version, target.flavour)
                      if t not in (C.T_HASH_METADATA_PRE_GA, C.T_HASH_LISTPACK_EX_PRE_GA)})


def _write_record(record: Record, writer: RdbWriter, target: Target, losses: _Losses,
                  report: ConvertReport, now_ms: int) -> None:
    if is_empty(record):
        report.empty_skipped += 1
        return
    if target.rdb_version < 3 and record.expire_ms is not None and record.expire_ms // 1000 not in _SECONDS_RANGE:
        losses.add("expiries outside 1901-2038 (RDB 1-2 store 32-bit seconds; key kept without TTL)",
                   record.key)
        record.expire_ms = None
    if can_pass_through(record, target):
        writer.record(record)
        report.passthrough += 1
        return
    kind = record.kind
    if kind == "stream" and target.rdb_version < 9:
        losses.add("streams", record.key)
        return
    if kind == "module":
        losses.add(f"module values ({module_name_of(record)})", record.key)
        return
    if kind == "hash":
        value = record.value()
        if not target.supports_field_ttl and any(e is not None for _, _, e in value):
            losses.add("hashes with field TTLs (TTLs dropped, fields kept)", record.key)
            live = [(f, x, None) for f, x, e in value if e is None or e >= now_ms]
            report.expired_fields_dropped += len(value) - len(live)
            value = live
    elif kind == "list":
        value = record.iter_value()
    else:
        value = record.value()
    try:
        encoded = encode_value(kind, value, target)
    except ValueError as exc:  # duplicates or out-of-range values the engine would refuse
        raise RdbError(f"cannot re-encode for {target.name}: {exc}", offset=record.offset,
                       path=record.path, key=record.key) from None
    if encoded is None:
        report.empty_skipped += 1
        return
    writer.value(record.key, encoded, expire_ms=record.expire_ms, idle=record.idle, freq=record.freq)
    report.reencoded += 1
    name = record.encoding
    report.reencoded_by_type[name] = report.reencoded_by_type.get(name, 0) + 1


def convert(src: str | os.PathLike, dst: str | os.PathLike, target: Target | None = None, *,
            allow_lossy: bool = False, verify_checksum: bool = True,
            progress: Progress | None = None) -> ConvertReport:
    """Convert the RDB file ``src`` into ``dst`` for ``target`` (default: same version, passthrough).

    ``dst`` appears only when the whole file was written; on any error nothing is left behind.
    """
    with open_input(src) as inp, atomic_output(dst) as out:
        return convert_stream(inp, out, target, allow_lossy=allow_lossy,
                              verify_checksum=verify_checksum, path=str(src), progress=progress)
