"""An RDB file whose databases are filled in any order, then written whole with exact counts.

Split, merge and reshard produce records for many output files and databases at once, in input
order. Each database's records go to a spooled temporary body (memory first, disk beyond a few
MB), or straight to a named file when another process will take them over;
:meth:`RdbAssembler.write` then emits the header, functions, module data and every database with a
RESIZEDB that is right for this file, and the CRC-64. An assembler whose records all sit in named
files can be pickled, so several outputs can be written by several processes at once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import IO, BinaryIO, Iterable

from .targets import Target
from .writer import RdbWriter

_SPOOL_MEMORY = 1 << 20  # per (shard, database): many shards must not add up to much
_COPY = 1 << 20


@dataclass
class DbCounts:
    keys: int = 0
    expires: int = 0


class _Body:
    """One database's records: those written here (a file opened on first use) followed by files
    of records written by another process, in order."""

    def __init__(self) -> None:
        self.file: IO[bytes] | None = None
        self.writer: RdbWriter | None = None
        self.path = ""
        self.counts = DbCounts()
        self.parts: list[str] = []


@dataclass
class Written:
    """What :meth:`RdbAssembler.write` produced."""

    bytes: int
    sha256: str
    crc64: int
    databases: dict[int, DbCounts] = field(default_factory=dict)


class _Hashing:
    """Pass-through writer that also hashes what it writes (sha256 for manifests and layouts)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.out.write(data)


class RdbAssembler:
    """Collect records per database, then write one complete RDB file for ``target``."""

    def __init__(self, target: Target, aux: Iterable[tuple[bytes, bytes]] = (), *,
                 spool_dir: str | None = None, prefix: str = "") -> None:
        """With ``spool_dir``, records written here go to files ``<prefix><db>.body`` in it (for
        another process to take over, :meth:`hand_over`) instead of anonymous spooled files."""
        self.target = target
        self.aux = list(aux)
        self.functions: list[bytes] = []
        #: (when, raw) of MODULE_AUX items: when 1 goes before the keyspace, 2 after it
        self.module_aux: list[tuple[int, bytes]] = []
        self._bodies: dict[int, _Body] = {}
        self._spool_dir, self._prefix = spool_dir, prefix

    def body(self, db: int) -> _Body:
        body = self._bodies.get(db)
        if body is None:
            body = self._bodies[db] = _Body()
        return body

    def writer(self, db: int) -> RdbWriter:
        """A writer for records of database ``db``; count them with :meth:`counted`."""
        body = self.body(db)
        if body.writer is None:
            if self._spool_dir is None:
                body.file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)
            else:
                body.path = os.path.join(self._spool_dir, f"{self._prefix}{db}.body")
                body.file = open(body.path, "w+b")
            body.writer = RdbWriter(body.file, self.target)
        return body.writer

    def counted(self, db: int, keys: int, expires: int) -> None:
        counts = self.body(db).counts
        counts.keys += keys
        counts.expires += expires

    def add_raw(self, db: int, data: bytes | bytearray, keys: int, expires: int) -> None:
        """Records already in the target's format (a routed run of passthrough records), written
        through at once: no copy is kept, so the caller may reuse ``data``."""
        self.writer(db).flush()  # records encoded before these stay in front of them
        self.body(db).file.write(data)
        self.counted(db, keys, expires)

    def hand_over(self) -> list[tuple[int, str, int, int]]:
        """Close the files of records written here (``spool_dir`` given) and forget them, for
        another process to :meth:`add_file`: (db, path, keys, expires) per database."""
        out = []
        for db, body in self._bodies.items():
            if body.writer is not None:
                body.writer.flush()
                body.file.close()
                out.append((db, body.path, body.counts.keys, body.counts.expires))
        self._bodies.clear()
        return out

    def add_file(self, db: int, path: str, keys: int, expires: int) -> None:
        """Records another process left in a file (see :meth:`hand_over`); the file is read
        when this one is written, so it must exist until then."""
        body = self.body(db)
        body.parts.append(path)
        body.counts.keys += keys
        body.counts.expires += expires

    def write(self, out: BinaryIO) -> Written:
        """Write the whole file: header, functions, module data, databases in order, EOF, CRC."""
        hashing = _Hashing(out)
        writer = RdbWriter(hashing, self.target)
        writer.header(self.aux)
        for when, raw in self.module_aux:
            if when != 2:
                writer.module_aux(raw)
        for code in self.functions:
            writer.function(code)
        databases = {}
        for db in sorted(self._bodies):
            body = self._bodies[db]
            if not body.counts.keys:
                continue
            writer.select_db(db, body.counts.keys, body.counts.expires)
            if body.writer is not None:
                body.writer.flush()
                body.file.seek(0)
                _copy(body.file, writer)
            for part in body.parts:
                with open(part, "rb") as f:
                    _copy(f, writer)
            databases[db] = body.counts
        for when, raw in self.module_aux:
            if when == 2:
                writer.module_aux(raw)
        crc = writer.finish()
        return Written(writer.bytes_written, hashing.sha256.hexdigest(), crc, databases)

    @property
    def portable(self) -> bool:
        """Whether every record is in a named file, so that another process can write this file."""
        return all(body.writer is None for body in self._bodies.values())

    def close(self) -> None:
        for body in self._bodies.values():
            if body.file is not None:
                body.file.close()
        self._bodies.clear()


def _copy(source: BinaryIO, writer: RdbWriter) -> None:
    while chunk := source.read(_COPY):
        writer.raw(chunk)
