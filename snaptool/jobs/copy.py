"""`snaptool copy`: one snapshot from a repository into another — another bucket, region or account,
or between a directory and S3.

Between two S3 repositories whose destination credentials can read the source, the copy is
server-side (:mod:`snaptool.storage.s3copy`): no snapshot bytes pass through this process. Otherwise
every file is streamed: read from the source, hashed on the way, and written to the destination,
which only keeps it when its SHA-256 equals the manifest's. Files are checked against the manifest
(the stored object's size and SHA-256), the manifest is copied last, as it was, so the copy exists
only when complete. A rerun skips files already at the destination and verified, so an interrupted
copy resumes where it stopped.

The copy holds a shared lease on the destination (as a backup does): ``gc`` judges a leftover's age
by its snapshot id, so the files of an old snapshot being copied look like old garbage, and only
the lease keeps ``gc``/``prune`` (which take the exclusive one) away while they are written. Every
file is looked at once more just before the manifest goes in.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..errors import SnaptoolError
from ..storage.catalog import Catalog, file_path
from ..storage.errors import RepositoryError
from ..storage.lock import shared_lock
from ..storage.manifest import MANIFEST, FileEntry, Manifest
from ..storage.repository import Repository
from ..storage.s3 import hex_to_b64
from ..storage.s3copy import COPY_OBJECT_LIMIT, can_read, server_copy
from ..storage.s3upload import read_sha256

MODES = ("auto", "server", "stream")
_CHUNK = 8 << 20
Progress = Callable[[str, int, int], None]  # (file name, bytes done, bytes total)


class CopyError(SnaptoolError):
    """A snapshot that cannot be copied as asked."""


@dataclass
class CopyOptions:
    mode: str = "auto"  # auto: server-side where possible, else streamed; server / stream: only that
    multipart_threshold: int = COPY_OBJECT_LIMIT  # bigger files are copied with UploadPartCopy
    part_size: int | None = None  # UploadPartCopy part size (default 512 MiB)
    expected_source_owner: str | None = None  # account that must own the source bucket
    workers: int = 4  # parallel part copies per file


@dataclass
class FileCopy:
    name: str
    size: int
    action: str  # "server-copy", "server-part-copy", "streamed" or "already there"
    verified_by: str  # "s3-sha256", "reread", "sha256" (hashed in transit), "metadata"
    bytes_read: int = 0  # bytes that passed through this process, in
    bytes_written: int = 0  # and out


@dataclass
class CopyReport:
    snapshot: str
    source: str
    destination: str
    server_side: bool
    files: list[FileCopy] = field(default_factory=list)
    manifest: str = ""  # "copied" or "already there"
    seconds: float = 0.0

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self.files)

    @property
    def bytes_written(self) -> int:
        return sum(f.bytes_written for f in self.files)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bytes_read"], data["bytes_written"] = self.bytes_read, self.bytes_written
        return data


def copy_snapshot(spec: str, source: Repository, dest: Repository, options: CopyOptions | None = None, *,
                  progress: Progress | None = None) -> CopyReport:
    """Copy snapshot ``spec`` (id, unique prefix or ``latest``) from ``source`` to ``dest``."""
    options = options or CopyOptions()
    if options.mode not in MODES:
        raise CopyError(f"copy mode must be one of {', '.join(MODES)}, not {options.mode!r}")
    if source.url == dest.url:
        raise CopyError(f"source and destination are the same repository ({source.url})")
    started = time.monotonic()
    manifest = Catalog(source).resolve(spec)
    manifest_rel = file_path(manifest.id, MANIFEST)
    raw = source.read_bytes(manifest_rel)  # copied byte for byte: the destination says what the source said
    if Manifest.loads(raw, source.where(manifest_rel)).id != manifest.id:
        raise CopyError(f"{source.where(manifest_rel)} changed while it was read")
    present = _present_manifest(dest, manifest)
    server = _server_side(source, dest, manifest, options)
    report = CopyReport(manifest.id, source.url, dest.url, server)
    with shared_lock(dest, "copy") as lease:  # gc and prune wait until the manifest is in
        for entry in manifest.files:
            if not entry.name.startswith(manifest.id):
                raise CopyError(f"{source.where(file_path(manifest.id, entry.name))}: the file does not carry "
                                f"the snapshot id {manifest.id}")
            rel = file_path(manifest.id, entry.name)
            size, sha = _stored(entry)
            done = _finished(dest, rel, size, sha)
            if done is None:
                done = _copy_file(source, dest, rel, entry.name, size, sha, server, options, progress)
            report.files.append(done)
        _check_still_there(dest, manifest)
        lease.check()
        if present == raw:
            report.manifest = "already there"
        else:
            dest.write_bytes(manifest_rel, raw)
            report.manifest = "copied"
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _stored(entry: FileEntry) -> tuple[int, str]:
    """Size and sha256 of the object as stored (encrypted files are copied as they are)."""
    if entry.stored_size is not None and entry.stored_sha256:
        return entry.stored_size, entry.stored_sha256
    return entry.size, entry.sha256


def _check_still_there(dest: Repository, manifest: Manifest) -> None:
    """A HEAD of every copied file just before the manifest: one removed or cut since it was checked
    (by anything that ignored the lease) must not end up named by a manifest."""
    for entry in manifest.files:
        rel = file_path(manifest.id, entry.name)
        size, _ = _stored(entry)
        info = dest.head(rel)
        if info is None or info.size != size:
            found = "is gone" if info is None else f"has {info.size:,} bytes, not {size:,}"
            raise CopyError(f"{dest.where(rel)} {found} since it was copied; no manifest was written "
                            "(run the copy again)")


def _present_manifest(dest: Repository, manifest: Manifest) -> bytes | None:
    """The destination's manifest of this snapshot, refusing one that describes other files."""
    rel = file_path(manifest.id, MANIFEST)
    if not dest.exists(rel):
        return None
    data = dest.read_bytes(rel)
    other = Manifest.loads(data, dest.where(rel))
    if [(f.name, f.sha256) for f in other.files] != [(f.name, f.sha256) for f in manifest.files]:
        raise CopyError(f"{dest.where(rel)} describes different files under the same id; "
                        "forget it there first")
    return data


def _server_side(source: Repository, dest: Repository, manifest: Manifest, options: CopyOptions) -> bool:
    """Whether the files can be copied inside S3 with the destination's credentials."""
    if options.mode == "stream" or not manifest.files:
        return False
    if source.s3 is None or dest.s3 is None:
        if options.mode == "server":
            raise CopyError("a server-side copy needs two S3 repositories")
        return False
    if source.s3.resolved_endpoint() != dest.s3.resolved_endpoint():
        if options.mode == "server":
            raise CopyError("a server-side copy needs both repositories on the same S3 endpoint")
        return False
    bucket, key = source.bucket_key(file_path(manifest.id, manifest.files[0].name))
    if can_read(dest.client, bucket, key, options.expected_source_owner):
        return True
    if options.mode == "server":
        raise CopyError(f"the destination's credentials cannot read s3://{bucket}/{key}: grant them "
                        "s3:GetObject on the source (or copy with --mode stream)")
    return False


def _finished(dest: Repository, rel: str, size: int, sha: str) -> FileCopy | None:
    """The file as a finished copy when the destination already holds it, verified; else None."""
    info = dest.head(rel)
    name = rel.rsplit("/", 1)[-1]
    if info is None or info.size != size:
        return None
    if dest.s3 is None:
        local = dest.local_path(rel)
        assert local is not None
        digest = hashlib.sha256()
        with open(local, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return FileCopy(name, size, "already there", "sha256") if digest.hexdigest() == sha else None
    whole = info.whole_sha256_b64()
    if whole is not None:  # S3's own digest of the bytes
        return FileCopy(name, size, "already there", "s3-sha256") if whole == hex_to_b64(sha) else None
    if info.metadata.get("sha256") == sha:  # written by a streamed copy that checked the bytes first
        return FileCopy(name, size, "already there", "metadata")
    bucket, key = dest.bucket_key(rel)
    digest_hex, read = read_sha256(dest.client, bucket, key, dest.s3.owner_args(), dest.where(rel))
    return FileCopy(name, size, "already there", "reread", bytes_read=read) if digest_hex == sha else None


def _copy_file(source: Repository, dest: Repository, rel: str, name: str, size: int, sha: str, server: bool,
               options: CopyOptions, progress: Progress | None) -> FileCopy:
    if server:
        assert dest.s3 is not None
        try:
            result = server_copy(dest.client, source.bucket_key(rel), dest.bucket_key(rel), size=size, sha256=sha,
                                 write_args=dest.s3.write_args(), owner_args=dest.s3.owner_args(),
                                 where=dest.where(rel), source_owner=options.expected_source_owner,
                                 threshold=options.multipart_threshold, part_size=options.part_size,
                                 workers=options.workers)
        except RepositoryError as exc:
            # e.g. a KMS key the destination may not use: the bytes can still come through here
            if options.mode == "server" or "AccessDenied" not in str(exc):
                raise
        else:
            if progress is not None:
                progress(name, size, size)
            action = "server-copy" if result.method == "copy-object" else "server-part-copy"
            return FileCopy(name, size, action, result.verified_by, bytes_read=result.bytes_read)
    moved = 0
    with source.reader(rel) as src, dest.writer(rel, size, sha256=sha) as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            moved += len(chunk)
            if progress is not None:
                progress(name, moved, size)
        if moved != size:
            raise CopyError(f"{source.where(rel)}: {moved:,} bytes read, the manifest says {size:,}")
    return FileCopy(name, size, "streamed", "sha256", bytes_read=moved, bytes_written=moved)
