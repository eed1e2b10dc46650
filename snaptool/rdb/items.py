"""What the reader yields: the header, opcodes and key records of an RDB file, in file order.

Records keep their exact bytes (``raw``) so writers can copy them; decoding into Python values is
lazy (:meth:`Record.value`) and only done by jobs that need it (export, digest, downgrade).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .constants import encoding_name, kind_of
from .source import Raw, Spill


@dataclass(slots=True)
class Header:
    magic: bytes
    version: int
    flavour: str  # "redis" or "valkey"


@dataclass(slots=True)
class Aux:
    key: bytes
    value: bytes


@dataclass(slots=True)
class SelectDb:
    db: int


@dataclass(slots=True)
class ResizeDb:
    db_size: int
    expires_size: int


@dataclass(slots=True)
class Function:
    """A function library (FUNCTION2: the whole source, `#!lua name=…` header included)."""

    code: bytes

    @property
    def name(self) -> bytes:
        """The library name from the `#!<engine> name=<name>` first line (the line itself if absent)."""
        first = self.code.split(b"\n", 1)[0]
        for part in first.split():
            if part.startswith(b"name="):
                return part[5:]
        return first[:60]


@dataclass(slots=True)
class ModuleAux:
    module_id: int
    when: int
    raw: bytes  # the bytes after the opcode byte, as written
    module_name: str


@dataclass(slots=True)
class SlotInfo:
    slot: int
    size: int
    expires_size: int


@dataclass(slots=True)
class SlotImport:
    """Valkey 9 atomic slot migration state (kept only by engines that wrote it)."""

    raw: bytes


@dataclass(slots=True)
class End:
    """The EOF opcode and the checksum trailer (``stored`` is None below RDB 5)."""

    stored: int | None
    computed: int

    @property
    def status(self) -> str:
        if self.stored is None:
            return "absent"
        if self.stored == 0:
            return "disabled"
        return "ok" if self.stored == self.computed else "mismatch"


class Record:
    """One key: its type byte, name, expiry, LRU/LFU hints and the exact bytes of type+key+value."""

    __slots__ = ("db", "type", "key", "expire_ms", "idle", "freq", "raw", "value_start", "offset",
                 "flavour", "version", "path")

    def __init__(self, db: int, type_: int, key: bytes, expire_ms: int | None, idle: int | None,
                 freq: int | None, raw: Raw, value_start: int, offset: int, flavour: str,
                 version: int, path: str | None) -> None:
        self.db = db
        self.type = type_
        self.key = key
        self.expire_ms = expire_ms
        self.idle = idle
        self.freq = freq
        self.raw = raw
        self.value_start = value_start
        self.offset = offset
        self.flavour = flavour
        self.version = version
        self.path = path

    @property
    def kind(self) -> str:
        return kind_of(self.type, self.flavour) or "unknown"

    @property
    def encoding(self) -> str:
        return encoding_name(self.type, self.flavour)

    @property
    def size(self) -> int:
        """Serialized size of type+key+value in this file."""
        return len(self.raw)

    def value_bytes(self) -> bytes:
        """The value's bytes (after the key), as a DUMP payload body would carry them."""
        if isinstance(self.raw, Spill):
            f = self.raw.open()
            f.seek(self.value_start)
            return f.read()
        return self.raw[self.value_start:]

    def value(self) -> Any:
        """The decoded value (see :mod:`snaptool.rdb.model` for the shapes)."""
        from .values import decode_value
        return decode_value(self)

    def iter_value(self) -> Iterator[Any]:
        """Elements one at a time (list items, set members, zset/hash pairs) for huge keys."""
        from .values import iter_value
        return iter_value(self)

    def release(self) -> None:
        """Drop a spilled record's temporary file (records that fit in memory need nothing)."""
        if isinstance(self.raw, Spill):
            self.raw.close()

    def __repr__(self) -> str:
        return f"Record(db={self.db}, key={self.key!r}, type={self.type}, size={self.size})"


Item = Header | Aux | SelectDb | ResizeDb | Function | ModuleAux | SlotInfo | SlotImport | Record | End
