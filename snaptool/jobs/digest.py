"""The `DEBUG DIGEST` an engine would report after loading an RDB file, computed offline.

This is the validation primitive: restore, split, merge and drill compare a live node's digest
with this one. Keys already expired at ``at_ms`` are left out, as a primary drops them on load;
empty collections are left out, as loaders skip them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from itertools import chain
from typing import Any, Callable, Iterable, Iterator

from ..rdb.digest import DatasetDigest
from ..rdb.items import Record
from ..rdb.reader import RdbReader
from ..rdb.targets import Target, default_engine_for


@dataclass
class DigestReport:
    digest: str
    engine: str
    keys: int
    expired_skipped: int
    empty_skipped: int
    modules: int  # module values: only their type is digested (see docs/digest.md)
    at_ms: int


def string_value(record: Record) -> bytes:
    """A string record's value. Most are stored raw: their bytes are sliced out of the record
    without a decoder; int-encoded, compressed and spilled ones are decoded."""
    raw, at = record.raw, record.value_start
    if type(raw) is bytes:
        head = raw[at]
        if head < 0x40:
            start, size = at + 1, head
        elif head < 0x80:
            start, size = at + 2, ((head & 0x3F) << 8) | raw[at + 1]
        elif head == 0x80:
            start, size = at + 5, int.from_bytes(raw[at + 1:at + 5], "big")
        else:
            return record.value()
        if start + size == len(raw):
            return raw[start:]
    return record.value()


def digest_value_input(record: Record) -> Any | None:
    """The value to feed the digest, or None for an empty collection (loaders skip those)."""
    kind = record.kind
    if kind == "string":
        return string_value(record)
    if kind in ("stream", "module"):
        return record.value()
    items: Iterator = record.iter_value()
    first = next(items, None)
    if first is None:
        return None
    return chain((first,), items)


def digest_records(records: Iterable[Record], engine: Target, at_ms: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> DigestReport:
    """Digest already-read records (any db order) as ``engine`` would after loading them;
    ``progress(offset, keys)`` is told how far it got."""
    at_ms = int(time.time() * 1000) if at_ms is None else at_ms
    digest = DatasetDigest(engine.score_format, engine.hexpire_marker)
    expired = empty = modules = 0
    for record in records:
        if record.expire_ms is not None and record.expire_ms < at_ms:
            expired += 1
            continue
        value = digest_value_input(record)
        if value is None:
            empty += 1
            continue
        if record.kind == "module":
            modules += 1
        digest.add(record.db, record.key, record.kind, value, has_expire=record.expire_ms is not None)
        record.release()
        if progress is not None:
            progress(record.offset + record.size, digest.keys)
    return DigestReport(digest.hexdigest(), engine.name, digest.keys, expired, empty, modules, at_ms)


def digest_file(path: str | os.PathLike, engine: Target | None = None, *, at_ms: int | None = None,
                verify_checksum: bool = True, progress: Callable[[int, int], None] | None = None) -> DigestReport:
    """`snaptool digest FILE`: the dataset digest for ``engine`` (default: the newest engine that
    writes the file's RDB version)."""
    with RdbReader.open(path, verify_checksum=verify_checksum) as reader:
        header = reader.read_header()
        engine = engine or default_engine_for(header.version, header.flavour)
        return digest_records((i for i in reader.items() if type(i) is Record), engine, at_ms, progress)
