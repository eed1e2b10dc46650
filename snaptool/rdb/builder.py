"""Write an RDB file from Python values: the encoder and writer behind one small interface.

Jobs that produce data rather than copy it (migrations, tests, generators) add keys one by one;
each is encoded the way the target engine would encode it itself.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Iterable

from .encoder import encode_value
from .targets import Target
from .writer import RdbWriter

_COLLECTIONS = ("list", "set", "zset", "hash")


class RdbBuilder:
    """``b = RdbBuilder(f, target); b.add(b"k", "string", b"v", expire_ms=...); b.finish()``."""

    def __init__(self, out: BinaryIO, target: Target, *, aux: Iterable[tuple[bytes, bytes]] = (),
                 functions: Iterable[bytes] = ()) -> None:
        self.writer = RdbWriter(out, target)
        self.target = target
        default_aux = [(b"redis-bits", b"64"), (b"aof-base" if target.rdb_version >= 10 else b"aof-preamble", b"0")]
        self.writer.header([*aux, *default_aux])
        for code in functions:
            self.writer.function(code)
        self._db: int | None = None
        self.keys = 0
        self.empty_skipped = 0

    def add(self, key: bytes, kind: str, value: Any, *, db: int = 0, expire_ms: int | None = None) -> None:
        """Add one key; an empty collection is skipped, as engines never store one."""
        if kind in _COLLECTIONS and not isinstance(value, (list, tuple)):
            value = list(value)
        if kind in _COLLECTIONS and not value:
            self.empty_skipped += 1
            return
        if db != self._db:
            self.writer.select_db(db)
            self._db = db
        self.writer.value(key, encode_value(kind, value, self.target), expire_ms=expire_ms)
        self.keys += 1

    def finish(self) -> int:
        """Write EOF and the checksum; returns the bytes written."""
        self.writer.finish()
        return self.writer.bytes_written
