"""Streaming RDB reader: header, opcodes and raw key records from any binary stream (§1-3, §6).

The reader walks each value's structure only far enough to find where it ends, so the cost of a
record is a few length reads and one slice; values are decoded later, only when asked.
Anything it does not understand is refused with the type or opcode, RDB version and byte offset.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, Iterator

from ..errors import ChecksumError, RdbError, SnaptoolError, UnsupportedError
from . import constants as C
from .items import (Aux, End, Function, Header, Item, ModuleAux, Record, ResizeDb, SelectDb,
                    SlotImport, SlotInfo)
from .fastscan import Route, Run, ScanStats, scan_run
from .source import CHUNK, Source

_MAX_DB = (1 << 31) - 1  # engines keep the database count in a C int
_MODULE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def module_name(module_id: int) -> str:
    """The 9-character type name packed into the top 54 bits of a module id."""
    return "".join(_MODULE_ALPHABET[(module_id >> (10 + 6 * (8 - i))) & 63] for i in range(9))


def open_input(path: str | os.PathLike) -> BinaryIO:
    """Open an RDB input for reading: a file path, or "-" for standard input."""
    if str(path) == "-":
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise SnaptoolError(f"{path}: cannot open: {exc.strerror}") from None


def parse_header(magic: bytes, path: str | None = None) -> Header:
    """Validate the 9-byte magic and return version and flavour, or refuse clearly."""
    if magic.startswith(b"REDIS") and magic[5:9].isdigit():
        version = int(magic[5:9])
        if 1 <= version <= 15:
            return Header(magic, version, "redis")
        if version in (80, 81):
            raise UnsupportedError(f"RDB header {magic!r}: Redis magic with a Valkey version", offset=0,
                                   path=path)
        raise UnsupportedError(f"RDB version {version} ({magic!r}) is not one snaptool can read "
                               f"(Redis 1-15, Valkey 80-81)", offset=0, path=path)
    if magic.startswith(b"VALKEY") and magic[6:9].isdigit():
        version = int(magic[6:9])
        if version in (80, 81):
            return Header(magic, version, "valkey")
        raise UnsupportedError(f"RDB version {version} ({magic!r}) is not one snaptool can read "
                               f"(Redis 1-15, Valkey 80-81)", offset=0, path=path)
    raise RdbError(f"not an RDB file (starts with {magic[:9]!r})", offset=0, path=path)


class RdbReader:
    """Iterate the items of an RDB stream: ``for item in RdbReader(f): ...``.

    ``verify_checksum`` (default on) raises :class:`ChecksumError` at the end when a non-zero
    stored CRC-64 differs from the data; the End item reports the status either way.
    """

    def __init__(self, fileobj: BinaryIO, *, path: str | None = None, verify_checksum: bool = True,
                 spill_threshold: int | None = None) -> None:
        kwargs = {} if spill_threshold is None else {"spill_threshold": spill_threshold}
        self.source = Source(fileobj, path=path, **kwargs)
        self.path = path
        self.verify_checksum = verify_checksum
        self.header: Header | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, **kwargs) -> "RdbReader":
        """A reader over a file path ("-" for standard input); close it or use ``with``."""
        return cls(open_input(path), path="<stdin>" if str(path) == "-" else str(path), **kwargs)

    def close(self) -> None:
        if self.source._f is not None:
            self.source._f.close()

    def __enter__(self) -> "RdbReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Item]:
        return self.items()

    def records(self) -> Iterator[Record]:
        """Only the key records."""
        for item in self.items():
            if type(item) is Record:
                yield item

    def read_header(self) -> Header:
        """Read and check the 9-byte magic (``items`` does it itself when not done yet)."""
        if self.header is None:
            src = self.source
            if src.at_end():
                raise RdbError("empty file: no RDB header", offset=0, path=self.path)
            src._fill(9)
            magic = src.read(min(9, len(src._buf) - src._pos))
            if len(magic) < 9:
                raise RdbError(f"not an RDB file: only {len(magic)} bytes", offset=0, path=self.path)
            self.header = parse_header(magic, self.path)
        return self.header

    def items(self, fast: bytes | None = None, stats: ScanStats | None = None,
              route: Route | None = None) -> Iterator[Item]:
        """Every item in file order.

        With ``fast`` (a :func:`~snaptool.rdb.fastscan.type_mask`), runs of simple records of
        those types come out as :class:`~snaptool.rdb.fastscan.Run` items holding their exact
        bytes, instead of one Record each; ``stats`` then collects their per-type counters. With
        ``route`` the runs' records are appended to per-shard outputs instead (see fastscan.Route).
        """
        src = self.source
        if fast is not None and stats is None:
            stats = ScanStats()
        if self.header is None:
            yield self.read_header()
        header = self.header
        version, flavour, path = header.version, header.flavour, self.path
        valkey = flavour == "valkey"
        skippers = _VALKEY_SKIPPERS if valkey else _SKIPPERS
        db = 0
        expire_ms = idle = freq = None
        u8 = src.u8
        while True:
            if fast is not None and expire_ms is None and idle is None and freq is None:
                if len(src._buf) - src._pos < CHUNK // 2:
                    src._fill(CHUNK)
                pos = src._pos
                end, keys, expires, big = scan_run(src._buf, pos, fast, stats, route, db)
                if end > pos:
                    src._pos = end
                    raw = b"" if route is not None else src._buf[pos:end]
                    yield Run(db, raw, src._base + pos, end - pos, keys, expires, big)
                    continue
            offset = src.offset
            t = u8()
            if t < 242:
                if t not in skippers:
                    raise UnsupportedError(_type_message(t, header), offset=offset, path=path)
                src.begin_capture(back=1)  # the raw bytes start at the type byte
                key = None
                try:
                    key = src.string()
                    value_start = src.offset - offset
                    skippers[t](src, t, valkey)
                except RdbError as exc:
                    src.abort_capture()
                    if exc.key is None:
                        exc.key = key
                    raise
                raw = src.end_capture()
                yield Record(db, t, key, expire_ms, idle, freq, raw, value_start, offset, flavour,
                             version, path)
                expire_ms = idle = freq = None
                continue
            if t == C.OP_EXPIRETIME_MS:
                expire_ms = src.ms_time()
            elif t == C.OP_SELECTDB:
                db = src.length()
                if db > _MAX_DB:
                    raise RdbError(f"SELECTDB {db} is beyond any engine's database range", offset=offset,
                                   path=path)
                yield SelectDb(db)
            elif t == C.OP_RESIZEDB:
                yield ResizeDb(src.length(), src.length())
            elif t == C.OP_AUX:
                yield Aux(src.string(), src.string())
            elif t == C.OP_EOF:
                computed = src.crc()
                stored = None
                if version >= 5:
                    stored = int.from_bytes(src.read(8), "little")
                    if stored and stored != computed and self.verify_checksum:
                        raise ChecksumError(
                            f"CRC-64 mismatch: file says {stored:016x}, data gives {computed:016x} "
                            f"(--no-verify-checksum reads it anyway)", offset=offset + 1, path=path)
                yield End(stored, computed)
                return
            elif t == C.OP_IDLE:
                idle = src.length()
            elif t == C.OP_FREQ:
                freq = u8()
            elif t == C.OP_EXPIRETIME:
                expire_ms = src.int32() * 1000
            elif t == C.OP_FUNCTION2:
                yield Function(src.string())
            elif t == C.OP_MODULE_AUX:
                yield _module_aux(src)
            elif t == C.OP_SLOT_INFO:
                yield SlotInfo(src.length(), src.length(), src.length())
            elif t == C.OP_FUNCTION_PRE_GA:
                yield _function_pre_ga(src)
            elif t == C.OP_SLOT_IMPORT and valkey:
                yield _slot_import(src)
            else:
                raise UnsupportedError(_opcode_message(t, header), offset=offset, path=path)


def _type_message(t: int, header: Header) -> str:
    if t == C.T_MODULE_PRE_GA:
        what = "pre-release module value (type 6), which cannot be read without the module"
    elif header.flavour == "valkey" and t == 23 and header.version >= 81:
        what = "type 23 (Valkey PATH_HASH, unreleased)"
    elif t == 26:
        what = "type 26 (Redis 8.6 stream with IDMP data)"
    elif t in (27, 28) or 29 <= t <= 33:
        what = f"type {t} (Redis 8.8+ format, layout not published)"
    else:
        what = f"unknown type {t}"
    return f"{what} in {header.magic.decode(errors='replace')} is not supported"


def _opcode_message(t: int, header: Header) -> str:
    if t == C.OP_SLOT_IMPORT:
        what = "opcode 243 (Redis 8.6 KEY_META)"
    elif t == 242:
        what = "opcode 242 (Valkey forkless-save UPDATE, unreleased)"
    else:
        what = f"unknown opcode {t}"
    return f"{what} in {header.magic.decode(errors='replace')} is not supported"


def _module_aux(src: Source) -> ModuleAux:
    src.begin_capture()
    module_id = src.length()
    opcode = src.length()
    if opcode != C.MOD_UINT:
        src.abort_capture()
        raise src.error(f"module aux for {module_name(module_id)}: expected 'when' opcode 2, got {opcode}")
    when = src.length()
    _skip_module_body(src)
    raw = src.end_capture()
    return ModuleAux(module_id, when, bytes(raw) if isinstance(raw, bytes) else raw.getvalue(),
                     module_name(module_id))


def _function_pre_ga(src: Source) -> Function:
    """7.0-rc FUNCTION: name, engine, optional description, code → the GA library text."""
    name = src.string()
    engine = src.string()
    if src.length():
        src.skip_string()
    code = src.string()
    return Function(b"#!" + engine.lower() + b" name=" + name + b"\n" + code)


def _slot_import(src: Source) -> SlotImport:
    src.begin_capture()
    src.skip_string()
    for _ in range(src.length()):
        src.length()
        src.length()
    raw = src.end_capture()
    return SlotImport(raw if isinstance(raw, bytes) else raw.getvalue())


# -- value skippers: walk the structure of each type just far enough to find its end -----------

def _skip_string_value(src: Source, t: int, valkey: bool) -> None:
    src.skip_string()


def _skip_strings(src: Source, t: int, valkey: bool) -> None:
    skip = src.skip_string
    for _ in range(src.length()):
        skip()


def _skip_pairs(src: Source, t: int, valkey: bool) -> None:
    skip = src.skip_string
    for _ in range(src.length()):
        skip()
        skip()


def _skip_zset_legacy(src: Source, t: int, valkey: bool) -> None:
    for _ in range(src.length()):
        src.skip_string()
        src.skip_legacy_double()


def _skip_zset2(src: Source, t: int, valkey: bool) -> None:
    for _ in range(src.length()):
        src.skip_string()
        src.skip(8)


def _skip_quicklist2(src: Source, t: int, valkey: bool) -> None:
    for _ in range(src.length()):
        container = src.length()
        if container not in (1, 2):
            raise src.error(f"quicklist node container {container} is neither plain (1) nor packed (2)")
        src.skip_string()


def _skip_module_body(src: Source) -> None:
    while True:
        opcode = src.length()
        if opcode == C.MOD_EOF:
            return
        if opcode in (C.MOD_SINT, C.MOD_UINT):
            src.length()
        elif opcode == C.MOD_FLOAT:
            src.skip(4)
        elif opcode == C.MOD_DOUBLE:
            src.skip(8)
        elif opcode == C.MOD_STRING:
            src.skip_string()
        else:
            raise src.error(f"unknown module opcode {opcode}")


def _skip_module(src: Source, t: int, valkey: bool) -> None:
    src.length()
    _skip_module_body(src)


def _skip_stream(src: Source, t: int, valkey: bool) -> None:
    skip_string, length, skip = src.skip_string, src.length, src.skip
    for _ in range(length()):
        skip_string()
        skip_string()
    length(), length(), length()  # length, last id
    if t >= C.T_STREAM_LISTPACKS_2:
        length(), length(), length(), length(), length()  # first id, max deleted id, entries added
    for _ in range(length()):
        skip_string()
        length(), length()
        if t >= C.T_STREAM_LISTPACKS_2:
            length()
        for _ in range(length()):
            skip(24)
            length()
        for _ in range(length()):
            skip_string()
            skip(8)
            if t >= C.T_STREAM_LISTPACKS_3:
                skip(8)
            skip(16 * length())


def _skip_hash_metadata(src: Source, t: int, valkey: bool) -> None:
    if valkey:  # Valkey HASH_2: field, value, 8-byte expiry
        for _ in range(src.length()):
            src.skip_string()
            src.skip_string()
            src.skip(8)
        return
    if t == C.T_HASH_METADATA:
        src.skip(8)
    for _ in range(src.length()):
        src.length()
        src.skip_string()
        src.skip_string()


def _skip_listpack_ex(src: Source, t: int, valkey: bool) -> None:
    if t == C.T_HASH_LISTPACK_EX:
        src.skip(8)
    src.skip_string()


_SKIPPERS = {
    C.T_STRING: _skip_string_value, C.T_LIST: _skip_strings, C.T_SET: _skip_strings,
    C.T_ZSET: _skip_zset_legacy, C.T_HASH: _skip_pairs, C.T_ZSET_2: _skip_zset2,
    C.T_MODULE_2: _skip_module, C.T_HASH_ZIPMAP: _skip_string_value, C.T_LIST_ZIPLIST: _skip_string_value,
    C.T_SET_INTSET: _skip_string_value, C.T_ZSET_ZIPLIST: _skip_string_value,
    C.T_HASH_ZIPLIST: _skip_string_value, C.T_LIST_QUICKLIST: _skip_strings,
    C.T_STREAM_LISTPACKS: _skip_stream, C.T_HASH_LISTPACK: _skip_string_value,
    C.T_ZSET_LISTPACK: _skip_string_value, C.T_LIST_QUICKLIST_2: _skip_quicklist2,
    C.T_STREAM_LISTPACKS_2: _skip_stream, C.T_SET_LISTPACK: _skip_string_value,
    C.T_STREAM_LISTPACKS_3: _skip_stream, C.T_HASH_METADATA_PRE_GA: _skip_hash_metadata,
    C.T_HASH_LISTPACK_EX_PRE_GA: _skip_listpack_ex, C.T_HASH_METADATA: _skip_hash_metadata,
    C.T_HASH_LISTPACK_EX: _skip_listpack_ex,
}
#: In VALKEY files byte 22 is HASH_2 (walked by _skip_hash_metadata's Valkey branch); 23-25 do not exist.
_VALKEY_SKIPPERS = {t: f for t, f in _SKIPPERS.items() if t <= C.T_VALKEY_HASH_2}

