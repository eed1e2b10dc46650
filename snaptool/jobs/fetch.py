"""Get a snapshot's files onto this machine, checked against the manifest before anything uses them.

Local repositories are read in place (one hashing pass); S3 objects are downloaded into a working
directory, hashed on the way. A file whose size or SHA-256 differs from the manifest stops the
job with its name before a single key is restored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterator

from ..errors import SnaptoolError
from ..rdb.items import Record
from ..rdb.reader import RdbReader
from ..storage.catalog import file_path
from ..storage.manifest import FileEntry, Manifest
from ..storage.repository import Repository

_CHUNK = 8 << 20


class IntegrityError(SnaptoolError):
    """A stored file is not what the manifest says it is."""

    exit_code = 2


@dataclass
class Fetched:
    entry: FileEntry
    path: str  # a local file with exactly the manifest's bytes


def fetch(repo: Repository, manifest: Manifest, workdir: str,
          progress: Callable[[str, int, int], None] | None = None) -> list[Fetched]:
    """Every file of ``manifest`` as a verified local path (``progress(name, done, total)``)."""
    out = []
    for entry in manifest.files:
        rel = file_path(manifest.id, entry.name)
        if not entry.name.startswith(manifest.id):
            raise IntegrityError(f"{repo.where(rel)}: the file does not carry the snapshot id {manifest.id}")
        local = repo.local_path(rel)
        sha = hashlib.sha256()
        size = 0
        with repo.reader(rel) as src:
            sink = None
            if local is None:
                local = os.path.join(workdir, entry.name)
                sink = open(local, "wb")
            try:
                while chunk := src.read(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
                    if sink is not None:
                        sink.write(chunk)
                    if progress is not None:
                        progress(entry.name, size, entry.size)
            finally:
                if sink is not None:
                    sink.close()
        where = repo.where(rel)
        if size != entry.size:
            raise IntegrityError(f"{where}: {size:,} bytes stored, the manifest says {entry.size:,} "
                                 "(truncated or replaced)")
        if sha.hexdigest() != entry.sha256:
            raise IntegrityError(f"{where}: sha256 {sha.hexdigest()} does not match the manifest's "
                                 f"{entry.sha256} (corrupted)")
        out.append(Fetched(entry, local))
    return out


def records_of(paths: list[str]) -> Iterator[Record]:
    """Every key record of the files, in order (the snapshot side of a comparison)."""
    for path in paths:
        with RdbReader.open(path) as reader:
            yield from reader.records()


def copy_out(fetched: Fetched, dest: str) -> None:
    """A verified file copied to ``dest`` under a temporary name, then renamed."""
    tmp = f"{dest}.part"
    shutil.copyfile(fetched.path, tmp)
    os.replace(tmp, dest)
