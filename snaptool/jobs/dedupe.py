"""Keys present more than once across inputs (or after mapping databases), found in bounded memory.

Engines refuse a file holding a key twice ("Duplicated key found in RDB file"), so merges and
multi-input splits look for such keys first. Each (db, key) becomes a 16-byte BLAKE2b digest (two
different keys share one with a chance of about 2^-100 even for billions of keys), written into
64 partition files on disk; each partition is then sorted on its own to find repeated digests.
Repeated digests, and the occurrences seen while writing, live in a dict while they are few and
in an SQLite file on disk beyond that, so memory stays bounded however many keys repeat.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from typing import Callable, Iterator, Sequence

from ..errors import SnaptoolError
from ..rdb.items import Record
from ..rdb.reader import RdbReader, open_input

POLICIES = ("error", "first", "last")
_PARTITIONS = 64
_FLUSH_AT = 1 << 18  # bytes of digests held per partition (64 of them) before they go to its file
_IN_MEMORY = 200_000  # repeated keys kept in a dict; more go to SQLite on disk
_LISTED = 10
_DIGEST = 16

DbMap = Callable[[int, str], int]
KeyFilter = Callable[[int, bytes], bool]


def _same_db(db: int, path: str) -> int:
    return db


def records(paths: Sequence[str], verify_checksum: bool = True) -> Iterator[tuple[str, Record]]:
    """(path, record) for every record of every input, in order."""
    for path in paths:
        with RdbReader(open_input(path), path=path, verify_checksum=verify_checksum) as reader:
            for record in reader.records():
                yield path, record
                record.release()


def key_digest(db: int, key: bytes) -> bytes:
    """The identity of a key in an output database."""
    return hashlib.blake2b(db.to_bytes(4, "little") + key, digest_size=_DIGEST).digest()


class _Store:
    """digest → int, in a dict while small, in an SQLite table on disk once it grows."""

    def __init__(self) -> None:
        self._dict: dict[bytes, int] = {}
        self._db: sqlite3.Connection | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self.size = 0

    def _spill(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="snaptool-dups-")
        self._db = sqlite3.connect(os.path.join(self._dir.name, "dups.sqlite"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE d (k BLOB PRIMARY KEY, v INTEGER) WITHOUT ROWID")
        self._db.executemany("INSERT INTO d VALUES (?, ?)", self._dict.items())
        self._dict = {}

    def get(self, digest: bytes) -> int | None:
        if self._db is None:
            return self._dict.get(digest)
        row = self._db.execute("SELECT v FROM d WHERE k = ?", (digest,)).fetchone()
        return None if row is None else row[0]

    def set(self, digest: bytes, value: int) -> None:
        if self._db is None:
            if digest not in self._dict:
                self.size += 1
            self._dict[digest] = value
            if self.size > _IN_MEMORY:
                self._spill()
            return
        if self.get(digest) is None:
            self.size += 1
        self._db.execute("INSERT OR REPLACE INTO d VALUES (?, ?)", (digest, value))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._dir.cleanup()
            self._db = self._dir = None


class Duplicates:
    """Keys found more than once: how often each occurs, and a few of them by name."""

    def __init__(self) -> None:
        self.counts = _Store()
        self.examples: list[tuple[int, bytes, int]] = []  # (db, key, occurrences) for messages

    def __len__(self) -> int:
        return self.counts.size

    def __bool__(self) -> bool:
        return self.counts.size > 0

    def close(self) -> None:
        self.counts.close()


def find_duplicates(paths: Sequence[str], *, map_db: DbMap = _same_db, verify_checksum: bool = True,
                    only: KeyFilter | None = None) -> Duplicates:
    """Every key found more than once (among the keys ``only(db, key)`` accepts, when given)."""
    found = Duplicates()
    with tempfile.TemporaryDirectory(prefix="snaptool-keys-") as tmp:
        held = [bytearray() for _ in range(_PARTITIONS)]
        files = [open(os.path.join(tmp, f"{i}.bin"), "w+b") for i in range(_PARTITIONS)]
        try:
            for path, record in records(paths, verify_checksum):
                db = map_db(record.db, path)
                if only is not None and not only(db, record.key):
                    continue
                digest = key_digest(db, record.key)
                part = held[digest[0] % _PARTITIONS]
                part += digest
                if len(part) >= _FLUSH_AT:
                    files[digest[0] % _PARTITIONS].write(part)
                    part.clear()
            for part, f in zip(held, files):
                f.write(part)
                f.flush()
                f.seek(0)
                data = f.read()
                ordered = sorted(data[i:i + _DIGEST] for i in range(0, len(data), _DIGEST))
                run = 1
                for i in range(1, len(ordered) + 1):
                    if i < len(ordered) and ordered[i] == ordered[i - 1]:
                        run += 1
                        continue
                    if run > 1:
                        found.counts.set(ordered[i - 1], run)
                    run = 1
        finally:
            for f in files:
                f.close()
    if found:
        _name_examples(found, paths, map_db, verify_checksum)
    return found


def _name_examples(found: Duplicates, paths: Sequence[str], map_db: DbMap, verify_checksum: bool) -> None:
    """Find the names of the first few duplicates (for messages), stopping as soon as it has them."""
    named: set[bytes] = set()
    for path, record in records(paths, verify_checksum):
        db = map_db(record.db, path)
        digest = key_digest(db, record.key)
        if digest not in named and (n := found.counts.get(digest)):
            named.add(digest)
            found.examples.append((db, record.key, n))
            if len(found.examples) >= min(_LISTED, len(found)):
                return


class Keeper:
    """Applies a duplicate policy as records stream by: ``keep(db, key)`` for each occurrence."""

    def __init__(self, duplicates: Duplicates | None, policy: str) -> None:
        if policy not in POLICIES:
            raise SnaptoolError(f"--on-duplicate must be one of {', '.join(POLICIES)}")
        duplicates = duplicates if duplicates is not None else Duplicates()
        if duplicates and policy == "error":
            shown = ", ".join(f"{key!r} (db {db}, {n} times)" for db, key, n in duplicates.examples)
            raise SnaptoolError(f"{len(duplicates)} keys appear in more than one place, e.g. {shown}; "
                                f"choose --on-duplicate first or last")
        self.duplicates = duplicates
        self.policy = policy
        self._seen = _Store()
        self.dropped = 0

    def keep(self, db: int, key: bytes) -> bool:
        if not self.duplicates:
            return True
        digest = key_digest(db, key)
        total = self.duplicates.counts.get(digest)
        if total is None:
            return True
        seen = (self._seen.get(digest) or 0) + 1
        self._seen.set(digest, seen)
        if seen == (1 if self.policy == "first" else total):
            return True
        self.dropped += 1
        return False

    def close(self) -> None:
        self._seen.close()
        self.duplicates.close()


def selected_records(paths: Sequence[str], policy: str, *, map_db: DbMap = _same_db,
                     verify_checksum: bool = True) -> Iterator[Record]:
    """The input records a merge or split keeps, in input order (what validation compares)."""
    keeper = Keeper(find_duplicates(paths, map_db=map_db, verify_checksum=verify_checksum), policy)
    try:
        for path, record in records(paths, verify_checksum):
            if keeper.keep(map_db(record.db, path), record.key):
                yield record
    finally:
        keeper.close()
