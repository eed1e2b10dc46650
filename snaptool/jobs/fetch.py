"""Get a snapshot's files onto this machine, checked against the manifest before anything uses them.

Local repositories are read in place (one hashing pass); S3 objects are downloaded into a working
directory, hashed on the way. A file whose size or SHA-256 differs from the manifest stops the
job with its name before a single key is restored.

Encrypted snapshots: the key is found first (an identity, the passphrase, or KMS unwrapping the
manifest's data key), so a missing or wrong key stops the job before any download. Then, per
file, the stored object's size and SHA-256 are checked before a byte of it is decrypted; it is
decrypted into the working directory (every 64 KiB chunk authenticated), and the plaintext's size
and SHA-256 are checked against the manifest too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import SnaptoolError
from ..rdb.items import Record
from ..rdb.reader import RdbReader
from ..storage.catalog import file_path
from ..storage.manifest import FileEntry, Manifest
from ..storage.repository import Repository

if TYPE_CHECKING:  # cryptography is imported only for encrypted snapshots
    from ..crypto.schemes import DecryptionKeys, Unsealed

_CHUNK = 8 << 20
Progress = Callable[[str, int, int], None]


class IntegrityError(SnaptoolError):
    """A stored file is not what the manifest says it is."""

    exit_code = 2


@dataclass
class Fetched:
    entry: FileEntry
    path: str  # a local file with exactly the manifest's bytes (the plaintext RDB)
    decrypted_with: str | None = None  # which key opened it, for encrypted snapshots


def fetch(repo: Repository, manifest: Manifest, workdir: str, progress: Progress | None = None,
          keys: DecryptionKeys | None = None) -> list[Fetched]:
    """Every file of ``manifest`` as a verified local path (``progress(name, done, total)``);
    ``keys`` open an encrypted snapshot (KMS needs none)."""
    unsealed = None
    if manifest.encryption is not None:
        from ..crypto.schemes import DecryptionKeys
        unsealed = (keys or DecryptionKeys()).unseal(manifest.encryption, manifest.id)
    out = []
    for entry in manifest.files:
        rel = file_path(manifest.id, entry.name)
        if not entry.name.startswith(manifest.id):
            raise IntegrityError(f"{repo.where(rel)}: the file does not carry the snapshot id {manifest.id}")
        if unsealed is not None:
            out.append(Fetched(entry, _fetch_encrypted(repo, rel, entry, workdir, unsealed, progress), unsealed.via))
            continue
        local = repo.local_path(rel)
        target = None if local is not None else os.path.join(workdir, entry.name)
        size, sha = _hash_copy(repo, rel, entry.name, entry.size, target, progress)
        _verify(repo.where(rel), size, sha, entry.size, entry.sha256)
        out.append(Fetched(entry, local or target or ""))
    return out


def _hash_copy(repo: Repository, rel: str, name: str, total: int, target: str | None,
               progress: Progress | None) -> tuple[int, str]:
    """(size, sha256) of a stored object, copied to ``target`` on the way when given."""
    sha = hashlib.sha256()
    size = 0
    with repo.reader(rel) as src:
        sink = open(target, "wb") if target is not None else None
        try:
            while chunk := src.read(_CHUNK):
                sha.update(chunk)
                size += len(chunk)
                if sink is not None:
                    sink.write(chunk)
                if progress is not None:
                    progress(name, size, total)
        finally:
            if sink is not None:
                sink.close()
    return size, sha.hexdigest()


def _verify(where: str, size: int, sha: str, want_size: int, want_sha: str, what: str = "") -> None:
    if size != want_size:
        raise IntegrityError(f"{where}: {size:,} bytes {what or 'stored'}, the manifest says {want_size:,} "
                             "(truncated or replaced)")
    if sha != want_sha:
        raise IntegrityError(f"{where}: sha256 {what + ' ' if what else ''}{sha} does not match the manifest's "
                             f"{want_sha} (corrupted)")


def _fetch_encrypted(repo: Repository, rel: str, entry: FileEntry, workdir: str, unsealed: Unsealed,
                     progress: Progress | None) -> str:
    """The stored object checked, then decrypted into ``workdir``; the plaintext checked."""
    from ..crypto.age import decrypt
    from ..crypto.errors import CryptoError

    where = repo.where(rel)
    if entry.stored_size is None or entry.stored_sha256 is None:
        raise IntegrityError(f"{where}: the manifest has no size or sha256 of the stored (encrypted) object")
    local = repo.local_path(rel)
    copy = None if local is not None else os.path.join(workdir, entry.name + ".download")
    try:
        size, sha = _hash_copy(repo, rel, entry.name, entry.stored_size, copy, progress)
        _verify(where, size, sha, entry.stored_size, entry.stored_sha256)
        plain = os.path.join(workdir, entry.name.removesuffix(".age") or entry.name)
        sha_plain = hashlib.sha256()
        size_plain = 0
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # plaintext: for this user only
        with open(local or copy or "", "rb") as src, os.fdopen(fd, "wb") as sink:
            try:
                for chunk in decrypt(src, unsealed.identities):
                    sha_plain.update(chunk)
                    size_plain += len(chunk)
                    sink.write(chunk)
            except CryptoError as exc:
                sink.close()
                os.unlink(plain)
                raise type(exc)(f"{where}: cannot decrypt: {exc}") from None
    finally:
        if copy is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(copy)
    _verify(where, size_plain, sha_plain.hexdigest(), entry.size, entry.sha256, "after decryption")
    return plain


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
