"""Store one RDB stream in a repository in a single pass: upload, hash, check and count together.

The bytes go through a tee on their way from the source (a socket, a file, an S3 object) to the
repository writer: SHA-256 over every byte, and the RDB reader over the same bytes so the file's
own CRC-64 is verified and the manifest's key and expiry counts per database come out of the same
read. Runs of simple records are counted by the fast scanner without decoding; nothing is held
whole. A stream that is not a complete, valid RDB raises before the file is committed.

Encrypted at rest (a ``sealer``), the same pass splits in two: the plaintext goes to the SHA-256
and the reader as before, and through the age encryptor, whose ciphertext goes to the repository
writer through a second SHA-256 — so the manifest covers both the RDB and the stored object.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

from ..errors import RdbError
from ..rdb.fastscan import SCANNABLE, Run, ScanStats, type_mask
from ..rdb.items import Aux, End, Record
from ..rdb.reader import RdbReader
from ..rdb.targets import Target, default_engine_for
from ..storage.catalog import file_path
from ..storage.manifest import DbStats, FileEntry
from ..storage.repository import Repository
from .digest import digest_records

if TYPE_CHECKING:  # cryptography is imported only by backups that encrypt
    from ..crypto.schemes import Sealer

ProgressFn = Callable[[int, int], None]  # (bytes so far, keys so far)
_ALL = type_mask(SCANNABLE)
_WRITER_AUX = {b"redis-ver": "redis", b"valkey-ver": "valkey"}


class _Tee:
    """A readable file that copies what is read into ``out`` and a SHA-256 on the way."""

    def __init__(self, src: BinaryIO, out: BinaryIO) -> None:
        self.src = src
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.sha.update(data)
            self.out.write(data)
            self.size += len(data)
        return data

    def close(self) -> None:
        """The caller owns both ends."""


class _Stored:
    """A writable file counting and hashing what reaches the repository (the stored object)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.out.write(data)
        self.size += len(data)
        return len(data)


class _Counter:
    """Key and expiry counts per database, from Runs (fast path) and Records alike."""

    def __init__(self) -> None:
        self.databases: dict[int, DbStats] = {}
        self.keys = 0
        self.end: End | None = None
        self.written_by: str | None = None

    def records(self, items: Iterator[Any], progress: ProgressFn | None = None) -> Iterator[Record]:
        """Count every key; yield the Records (Runs are counted and dropped)."""
        for item in items:
            kind = type(item)
            if kind is Run:
                stats = self.databases.setdefault(item.db, DbStats())
                stats.keys += item.keys
                stats.expires += item.expires
                self.keys += item.keys
                if progress is not None:
                    progress(item.offset + item.length, self.keys)
            elif kind is Record:
                stats = self.databases.setdefault(item.db, DbStats())
                stats.keys += 1
                stats.expires += item.expire_ms is not None
                self.keys += 1
                if progress is not None and self.keys % 4096 == 0:
                    progress(item.offset + item.size, self.keys)
                yield item
            elif kind is End:
                self.end = item
            elif kind is Aux and item.key in _WRITER_AUX:
                self.written_by = f"{_WRITER_AUX[item.key]}-{item.value.decode('ascii', 'replace')}"


def count_file(path: str) -> tuple[dict[int, DbStats], End | None]:
    """Key and expiry counts per database of a stored file, and its End (CRC-64 checked)."""
    counter = _Counter()
    with RdbReader.open(path) as reader:
        for record in counter.records(reader.items(fast=_ALL, stats=ScanStats())):
            record.release()
    return dict(sorted(counter.databases.items())), counter.end


def ingest(stream: BinaryIO, repo: Repository, snapshot_id: str, name: str, *, where: str,
           expected_size: int | None = None, digest: bool = False, digest_target: Target | None = None,
           progress: ProgressFn | None = None, sealer: Sealer | None = None) -> FileEntry:
    """Copy ``stream`` (an RDB) to ``snapshots/<id>/<name>`` and describe it.

    ``where`` names the source in errors. With ``digest`` the file's DEBUG DIGEST (keys expired
    now left out) is computed too, as ``digest_target`` (default: the newest engine writing this
    RDB version) would report it: a decode of every value, much slower than the copy, so it is
    asked for, not the default. With ``sealer`` the object is stored encrypted (an age file) and
    the entry also gets ``stored_size``/``stored_sha256`` of what was stored.
    """
    counter = _Counter()
    digest_hex = None
    stored: _Stored | None = None
    if sealer is not None and expected_size is not None:
        from ..crypto.age import stored_size
        expected_size = stored_size(expected_size, 4096)
    with repo.writer(file_path(snapshot_id, name), expected_size) as out:
        sink: Any = out
        if sealer is not None:
            stored = _Stored(out)
            sink = sealer.writer(stored)
        tee = _Tee(stream, sink)
        reader = RdbReader(tee, path=where)
        header = reader.read_header()
        if digest:
            digest_target = digest_target or default_engine_for(header.version, header.flavour)
            digest_hex = digest_records(counter.records(reader.items(), progress=progress), digest_target).digest
        else:
            for record in counter.records(reader.items(fast=_ALL, stats=ScanStats()), progress=progress):
                record.release()
        end = counter.end
        if end is None:  # the reader raises on truncation; this guards against a reader change
            raise RdbError("the RDB stream ended without an EOF marker", offset=tee.size, path=where)
        if stream.read(1):
            raise RdbError("data after the RDB end marker", offset=tee.size, path=where)
        if stored is not None:
            sink.close()  # seals the final chunk
        if progress is not None:
            progress(tee.size, counter.keys)
    return FileEntry(
        name=name, size=tee.size, sha256=tee.sha.hexdigest(), rdb_version=header.version,
        magic=header.magic.decode("ascii", "replace"),
        crc64=f"{end.stored:016x}" if end.stored else None,
        databases=dict(sorted(counter.databases.items())),
        digest=digest_hex, digest_engine=digest_target.name if digest else None, written_by=counter.written_by,
        stored_size=stored.size if stored is not None else None,
        stored_sha256=stored.sha.hexdigest() if stored is not None else None)
