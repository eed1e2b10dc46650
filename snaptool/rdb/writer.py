"""Streaming RDB writer for any target version: header, AUX, databases, records, EOF and CRC-64.

Records are either copied byte for byte (:meth:`RdbWriter.record`, the passthrough path) or written
from an :class:`~snaptool.rdb.encoder.Encoded` value (:meth:`RdbWriter.value`). The writer emits only
what the target version knows: no AUX or RESIZEDB below RDB 7, no IDLE/FREQ below 9, second-based
expiries below 3, no checksum below 5.
"""

from __future__ import annotations

from typing import BinaryIO, Iterable

from ..errors import SnaptoolError
from . import constants as C
from .checksum import crc64
from .encoder import Encoded
from .items import Aux, Header, Record
from .primitives import encode_length, encode_ms_time, encode_string
from .source import Spill
from .targets import Target

_FLUSH_AT = 1 << 20

#: AUX fields that describe a replication point; a rewritten file is not one.
_REPLICATION_AUX = {b"repl-stream-db", b"repl-id", b"repl-offset"}
#: AUX fields that describe a layout which a rewrite invalidates or the writer regenerates.
_REGENERATED_AUX = {b"redis-ver", b"valkey-ver", b"aof-base", b"aof-preamble", b"slot-info",
                    b"cluster-slot-states"}


def header_aux(source: list[Aux], source_header: Header | None, target: Target) -> list[tuple[bytes, bytes]]:
    """AUX fields for a rewritten file: the engine's own version field, the source's informational
    fields (bits, ctime, used-mem, unknown ones) kept, replication and layout fields dropped."""
    if target.rdb_version < 7:
        return []
    kept = {a.key: a.value for a in source}
    out: list[tuple[bytes, bytes]] = []
    if source_header is not None and source_header.version == target.rdb_version:
        # same format: the writer named in the source still describes the file
        out += [(key, kept[key]) for key in (b"redis-ver", b"valkey-ver") if key in kept]
    elif target.version_aux:
        out.append(target.version_aux)
    for key, value in kept.items():
        if key in _REPLICATION_AUX or key in _REGENERATED_AUX:
            continue
        if key == b"lua" and target.rdb_version >= 10:
            continue  # 7.0+ ignores cached scripts
        out.append((key, value))
    out.append(aof_aux(target))
    return out


def aof_aux(target: Target) -> tuple[bytes, bytes]:
    """The AOF marker a server writes in a plain RDB file: `aof-base` from RDB 10, `aof-preamble` before."""
    return (b"aof-base", b"0") if target.rdb_version >= 10 else (b"aof-preamble", b"0")


class RdbWriter:
    """Write an RDB file for ``target`` to a binary stream, computing the CRC-64 as it goes."""

    def __init__(self, out: BinaryIO, target: Target) -> None:
        self.out = out
        self.target = target
        self.version = target.rdb_version
        self._parts: list[bytes] = []
        self._pending = 0
        self._crc = 0
        self.bytes_written = 0

    # -- low level -----------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        self._parts.append(data)
        self._pending += len(data)
        if self._pending >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Hand buffered bytes to the stream (the CRC-64 covers them from then on)."""
        if self._parts:
            data = b"".join(self._parts)
            self._crc = crc64(data, self._crc)
            self.out.write(data)
            self.bytes_written += len(data)
            self._parts = []
            self._pending = 0

    # -- structure -----------------------------------------------------------------------------

    def header(self, aux: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Magic, then AUX fields (RDB 7+)."""
        self._emit(self.target.magic)
        for key, value in aux:
            self.aux(key, value)

    def aux(self, key: bytes, value: bytes) -> None:
        """One AUX field (RDB 7+; dropped below, where the opcode does not exist)."""
        if self.version >= 7:
            self._emit(b"\xfa" + encode_string(key) + encode_string(value))

    def _require(self, version: int, what: str) -> None:
        if self.version < version:
            raise SnaptoolError(f"RDB {self.version} cannot hold {what} (RDB {version}+)")

    def module_aux(self, raw: bytes) -> None:
        """A MODULE_AUX item, copied (RDB 9+)."""
        self._require(9, "module aux data")
        self._emit(b"\xf7" + raw)

    def function(self, code: bytes) -> None:
        """A FUNCTION2 library (RDB 10+)."""
        self._require(10, "functions")
        self._emit(b"\xf5" + encode_string(code))

    def slot_import(self, raw: bytes) -> None:
        """A Valkey SLOT_IMPORT item, copied (VALKEY080+)."""
        self._require(80, "slot-import states")
        self._emit(b"\xf3" + raw)

    def select_db(self, db: int, db_size: int | None = None, expires_size: int | None = None) -> None:
        """SELECTDB, with a RESIZEDB hint (RDB 7+) when sizes are known."""
        self._emit(b"\xfe" + encode_length(db))
        if db_size is not None and self.version >= 7:
            self._emit(b"\xfb" + encode_length(db_size) + encode_length(expires_size or 0))

    def _prefix(self, expire_ms: int | None, idle: int | None, freq: int | None) -> None:
        v = self.version
        if expire_ms is not None:
            if v >= 3:
                self._emit(b"\xfc" + encode_ms_time(expire_ms))
            elif -(1 << 31) <= expire_ms // 1000 < 1 << 31:
                self._emit(b"\xfd" + (expire_ms // 1000).to_bytes(4, "little", signed=True))
            else:
                raise SnaptoolError(f"RDB {v} stores expiries as 32-bit seconds: {expire_ms} ms does not fit")
        if v >= 9:
            if idle is not None:
                self._emit(b"\xf8" + encode_length(idle))
            elif freq is not None:
                self._emit(bytes((0xF9, freq)))

    def record(self, record: Record) -> None:
        """Copy a record byte for byte (the caller has checked the target accepts its type)."""
        self._prefix(record.expire_ms, record.idle, record.freq)
        raw = record.raw
        if isinstance(raw, Spill):
            self.flush()
            f = raw.open()
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                self._emit(chunk)
        else:
            self._emit(raw)

    def raw(self, data: bytes) -> None:
        """Bytes already in the target's format (a run of passthrough records)."""
        self._emit(data)

    def value(self, key: bytes, encoded: Encoded, *, expire_ms: int | None = None,
              idle: int | None = None, freq: int | None = None) -> None:
        """Write a key whose value was built by the encoder."""
        self._prefix(expire_ms, idle, freq)
        self._emit(bytes((encoded.type,)) + encode_string(key))
        for chunk in encoded.chunks():
            self._emit(chunk)

    def finish(self) -> int:
        """EOF and (RDB 5+) the CRC-64 trailer; returns the checksum written (0 below RDB 5)."""
        self._emit(b"\xff")
        self.flush()
        if self.version >= 5:
            trailer = self._crc.to_bytes(8, "little")
            self.out.write(trailer)
            self.bytes_written += 8
            return self._crc
        return 0


def can_pass_through(record: Record, target: Target) -> bool:
    """Whether a record's bytes are valid as they are in a file for ``target``."""
    t = record.type
    if t in (C.T_HASH_METADATA_PRE_GA, C.T_HASH_LISTPACK_EX_PRE_GA):
        # Redis pre-GA field-TTL hashes are always rewritten; Valkey HASH_2 only moves to Valkey 9+
        return t == C.T_VALKEY_HASH_2 and record.flavour == "valkey" and target.rdb_version >= 80
    if target.rdb_version < 6 and record.version >= 6 and t in _ZIPLIST_TYPES:
        return False  # the blob may use ziplist integer forms RDB 2-5 loaders lack
    return t in C.types_for_version(target.rdb_version, target.flavour)


_ZIPLIST_TYPES = frozenset([C.T_LIST_ZIPLIST, C.T_ZSET_ZIPLIST, C.T_HASH_ZIPLIST])
