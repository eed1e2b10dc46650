"""Write an RDB file from Python values: the encoder and writer behind one small interface.

Jobs that produce data rather than copy it (migrations, tests, generators) add keys one by one;
each is encoded the way the target engine would encode it itself.
"""

from __future__ import annotations

import time
from typing import Any, BinaryIO, Iterable

from .encoder import encode_value
from .targets import Target
from .writer import RdbWriter, aof_aux


def default_aux(target: Target) -> list[tuple[bytes, bytes]]:
    """The AUX fields an engine of ``target`` would write: its version, word size, save time and
    AOF marker. `used-mem` is left out: nothing measured it for generated data."""
    named = [target.version_aux] if target.version_aux else []
    return [*named, (b"redis-bits", b"64"), (b"ctime", b"%d" % int(time.time())), aof_aux(target)]


class RdbBuilder:
    """``b = RdbBuilder(f, target); b.add(b"k", "string", b"v", expire_ms=...); b.finish()``."""

    def __init__(self, out: BinaryIO, target: Target, *, aux: Iterable[tuple[bytes, bytes]] = (),
                 functions: Iterable[bytes] = ()) -> None:
        self.writer = RdbWriter(out, target)
        self.target = target
        self.writer.header([*aux, *default_aux(target)])
        for code in functions:
            self.writer.function(code)
        self._db: int | None = None
        self.keys = 0
        self.empty_skipped = 0

    def add(self, key: bytes, kind: str, value: Any, *, db: int = 0, expire_ms: int | None = None) -> None:
        """Add one key; an empty collection is skipped, as engines never store one.

        Raises ValueError for a value the engine would refuse (duplicate members or fields).
        """
        encoded = encode_value(kind, value, self.target)
        if encoded is None:
            self.empty_skipped += 1
            return
        if db != self._db:
            self.writer.select_db(db)
            self._db = db
        self.writer.value(key, encoded, expire_ms=expire_ms)
        self.keys += 1

    def finish(self) -> int:
        """Write EOF and the checksum; returns the bytes written."""
        self.writer.finish()
        return self.writer.bytes_written
