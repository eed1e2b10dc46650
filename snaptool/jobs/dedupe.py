"""Keys present more than once across inputs (or after mapping databases), found in bounded memory.

Engines refuse a file holding a key twice ("Duplicated key found in RDB file"), so merges and
multi-input splits look for such keys first. Every (db, key) is hashed into 64 partitions that
spill to temporary files, so memory stays bounded however many keys there are; only repeated
hashes are then checked exactly, in a second pass.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections import Counter
from typing import Callable, Iterator, Sequence

from ..errors import SnaptoolError
from ..rdb.items import Record
from ..rdb.reader import RdbReader, open_input

POLICIES = ("error", "first", "last")
_PARTITIONS = 64
_SPILL_AT = 1 << 20  # hashes held per partition before they go to its file
_LISTED = 10

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


def _key_hash(db: int, key: bytes) -> int:
    return hash((db, key)) & 0xFFFFFFFFFFFFFFFF


def _repeated_hashes(paths: Sequence[str], map_db: DbMap, verify_checksum: bool, only: KeyFilter | None) -> set[int]:
    with tempfile.TemporaryDirectory(prefix="snaptool-keys-") as tmp:
        held = [array("Q") for _ in range(_PARTITIONS)]
        files = [open(os.path.join(tmp, f"{i}.bin"), "w+b") for i in range(_PARTITIONS)]
        try:
            for path, record in records(paths, verify_checksum):
                db = map_db(record.db, path)
                if only is not None and not only(db, record.key):
                    continue
                h = _key_hash(db, record.key)
                part = held[h >> 58]
                part.append(h)
                if len(part) >= _SPILL_AT:
                    part.tofile(files[h >> 58])
                    del part[:]
            repeated: set[int] = set()
            for part, f in zip(held, files):
                f.flush()
                f.seek(0)
                spilled = array("Q")
                spilled.frombytes(f.read())
                spilled.extend(part)
                ordered = sorted(spilled)
                repeated.update(a for a, b in zip(ordered, ordered[1:]) if a == b)
            return repeated
        finally:
            for f in files:
                f.close()


def find_duplicates(paths: Sequence[str], *, map_db: DbMap = _same_db, verify_checksum: bool = True,
                    only: KeyFilter | None = None) -> Counter:
    """(output db, key) → occurrences, for every key found more than once (among the keys
    ``only(db, key)`` accepts, when given)."""
    repeated = _repeated_hashes(paths, map_db, verify_checksum, only)
    if not repeated:
        return Counter()
    seen: Counter = Counter()
    for path, record in records(paths, verify_checksum):
        db = map_db(record.db, path)
        if _key_hash(db, record.key) in repeated:
            seen[(db, record.key)] += 1
    return Counter({k: n for k, n in seen.items() if n > 1})


class Keeper:
    """Applies a duplicate policy as records stream by: ``keep(db, key)`` for each occurrence."""

    def __init__(self, duplicates: Counter, policy: str) -> None:
        if policy not in POLICIES:
            raise SnaptoolError(f"--on-duplicate must be one of {', '.join(POLICIES)}")
        if duplicates and policy == "error":
            shown = ", ".join(f"{key!r} (db {db}, {n} times)" for (db, key), n in list(duplicates.items())[:_LISTED])
            raise SnaptoolError(f"{len(duplicates)} keys appear in more than one place, e.g. {shown}; "
                                f"choose --on-duplicate first or last")
        self.duplicates = duplicates
        self.policy = policy
        self._seen: Counter = Counter()
        self.dropped = 0

    def keep(self, db: int, key: bytes) -> bool:
        ident = (db, key)
        total = self.duplicates.get(ident)
        if total is None:
            return True
        self._seen[ident] += 1
        if self._seen[ident] == (1 if self.policy == "first" else total):
            return True
        self.dropped += 1
        return False


def selected_records(paths: Sequence[str], policy: str, *, map_db: DbMap = _same_db,
                     verify_checksum: bool = True) -> Iterator[Record]:
    """The input records a merge or split keeps, in input order (what validation compares)."""
    keeper = Keeper(find_duplicates(paths, map_db=map_db, verify_checksum=verify_checksum), policy)
    for path, record in records(paths, verify_checksum):
        if keeper.keep(map_db(record.db, path), record.key):
            yield record
