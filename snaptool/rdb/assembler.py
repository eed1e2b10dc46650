"""An RDB file whose databases are filled in any order, then written whole with exact counts.

Split, merge and reshard produce records for many output files and databases at once, in input
order. Each database's records go to a spooled temporary body (memory first, disk beyond a few
MB); :meth:`RdbAssembler.write` then emits the header, functions, module data and every database
with a RESIZEDB that is right for this file, and the CRC-64.
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
    """One database's records: a spooled file and a writer encoding records into it."""

    def __init__(self, target: Target) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)
        self.writer = RdbWriter(self.file, target)
        self.counts = DbCounts()
        #: files of records written elsewhere (another process), appended after ``file`` in order
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

    def __init__(self, target: Target, aux: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.target = target
        self.aux = list(aux)
        self.functions: list[bytes] = []
        #: (when, raw) of MODULE_AUX items: when 1 goes before the keyspace, 2 after it
        self.module_aux: list[tuple[int, bytes]] = []
        self._bodies: dict[int, _Body] = {}

    def body(self, db: int) -> _Body:
        body = self._bodies.get(db)
        if body is None:
            body = self._bodies[db] = _Body(self.target)
        return body

    def writer(self, db: int) -> RdbWriter:
        """A writer for records of database ``db``; count them with :meth:`counted`."""
        return self.body(db).writer

    def counted(self, db: int, keys: int, expires: int) -> None:
        counts = self.body(db).counts
        counts.keys += keys
        counts.expires += expires

    def add_raw(self, db: int, data: bytes | bytearray, keys: int, expires: int) -> None:
        """Records already in the target's format (a routed run of passthrough records)."""
        body = self.body(db)
        body.writer.raw(bytes(data))
        body.counts.keys += keys
        body.counts.expires += expires

    def export_bodies(self, directory: str, prefix: str) -> list[tuple[int, str, int, int]]:
        """Leave each database's records in a file (for another process to take over):
        (db, path, keys, expires) per database."""
        out = []
        for db, body in self._bodies.items():
            body.writer.flush()
            body.file.seek(0)
            path = os.path.join(directory, f"{prefix}-{db}.body")
            with open(path, "wb") as f:
                while chunk := body.file.read(_COPY):
                    f.write(chunk)
            out.append((db, path, body.counts.keys, body.counts.expires))
        return out

    def add_file(self, db: int, path: str, keys: int, expires: int) -> None:
        """Records another process left in a file (see :meth:`export_bodies`); the file is read
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
            body.writer.flush()
            if not body.counts.keys:
                continue
            writer.select_db(db, body.counts.keys, body.counts.expires)
            body.file.seek(0)
            while chunk := body.file.read(_COPY):
                writer.raw(chunk)
            for part in body.parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_COPY):
                        writer.raw(chunk)
            databases[db] = body.counts
        for when, raw in self.module_aux:
            if when == 2:
                writer.module_aux(raw)
        crc = writer.finish()
        return Written(writer.bytes_written, hashing.sha256.hexdigest(), crc, databases)

    def close(self) -> None:
        for body in self._bodies.values():
            body.file.close()
        self._bodies.clear()
