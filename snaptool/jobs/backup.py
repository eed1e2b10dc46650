"""`snaptool backup`: an RDB file, a live node or a whole cluster into one repository snapshot.

A live node is read through the replication protocol (as a replica would, see
:mod:`snaptool.engines.replication`); a cluster shard by shard, concurrently, from a healthy
replica where there is one. Every file streams straight into the repository through
:func:`~snaptool.jobs.ingest.ingest`; the manifest is written only after every file is stored
and checked, so a failed or killed backup never looks complete.

With ``BackupOptions.encryption`` every file is stored as an age file (``….rdb.age``), encrypted in
that same pass; the key material (recipients, or a KMS data key made for this snapshot) is set up
before any source is read, and the manifest records how — never a secret (docs/encryption.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

import redis

from ..engines.address import NodeAddress, TlsOptions
from ..engines.replication import open_rdb_stream
from ..engines.topology import ClusterNode, ClusterShard, is_cluster, read_topology
from ..errors import EngineError, SnaptoolError
from ..rdb.targets import Target, parse_target
from ..storage.lock import Lease, Waiting, shared_lock
from ..storage.catalog import Catalog, shard_file_name, snapshot_dir
from ..storage.manifest import KINDS, FileEntry, Manifest, new_snapshot_id
from ..storage.repository import Repository, S3Settings
from .ingest import ProgressFn, ingest

if TYPE_CHECKING:  # cryptography is imported only by backups that encrypt
    from ..crypto.schemes import EncryptionOptions, Sealer

#: progress_for(label, total_bytes_or_None) gives the callback for one file's transfer.
ProgressFactory = Callable[[str, int | None], ProgressFn]


class BackupCancelled(SnaptoolError):
    """Another shard of the same backup failed; this one stopped early."""


@dataclass
class BackupOptions:
    kind: str = "manual"
    tags: tuple[str, ...] = ()
    from_primary: bool = False
    digest: bool = False  # compute each file's DEBUG DIGEST too (decodes every value: slow)
    timeout: float = 60.0  # seconds without data from a node before giving up
    tls: TlsOptions | None = None
    username: str | None = None
    password: str | None = None
    source_s3: S3Settings | None = None  # for s3:// source files
    encryption: EncryptionOptions | None = None  # encrypt at rest (age recipients, passphrase or KMS)
    pinned: bool = False  # never removed by retention
    # elasticache:// sources: where ElastiCache exports to, and what to keep afterwards
    export_bucket: str | None = None
    keep_source: bool = False
    keep_export: bool = False
    grant_elasticache: bool = False
    poll_seconds: float = 15.0
    # while a prune or gc holds the repository's exclusive lock: wait up to this many seconds
    # (retrying with growing pauses), telling ``lock_waiting`` once, instead of failing at once
    lock_wait: float = 0.0
    lock_waiting: Waiting | None = None
    # steps and warnings of long-running sources (an ElastiCache snapshot and export), one line each
    echo: Callable[[str], None] | None = None


def backup(source: str, repo: Repository, options: BackupOptions | None = None, *,
           progress_for: ProgressFactory | None = None) -> Manifest:
    """Take one snapshot of ``source`` (a file path or URL, ``redis://``/``rediss://`` node or
    cluster) into ``repo`` and return its manifest, already committed."""
    options = options or BackupOptions()
    if options.kind not in KINDS:
        raise SnaptoolError(f"kind must be one of {', '.join(KINDS)}, not {options.kind!r}")
    if options.encryption is not None:
        options.encryption.check()  # bad recipients or options fail before any connection
    if source.startswith("elasticache://"):
        return _elasticache(source, repo, options, progress_for)
    started = time.monotonic()
    with _backup_lock(repo, options) as lease:  # prune never removes what is being written
        if source.startswith(("redis://", "rediss://")):
            address = NodeAddress.parse(source, tls=options.tls, username=options.username,
                                        password=options.password)
            if is_cluster(address):
                job = _ClusterBackup(address, repo, options, progress_for)
            else:
                job = _NodeBackup(address, repo, options, progress_for)
        else:
            job = _FileBackup(source, repo, options, progress_for)
        manifest = job.run()
        manifest.seconds = round(time.monotonic() - started, 3)
        manifest.pinned = options.pinned
        lease.check()
        Catalog(repo).commit(manifest)
    return manifest


def _elasticache(source: str, repo: Repository, options: BackupOptions,
                 progress_for: ProgressFactory | None) -> Manifest:
    """A managed cluster: snapshot, export to a bucket, ingest (see jobs/elasticache_backup.py)."""
    from .elasticache_backup import ElastiCacheBackupOptions, elasticache_backup

    if not options.export_bucket:
        raise SnaptoolError("elasticache:// needs --export-bucket (a bucket in the cluster's region)")
    settings = ElastiCacheBackupOptions(
        export_bucket=options.export_bucket, kind=options.kind, tags=options.tags, pinned=options.pinned,
        keep_source=options.keep_source,
        keep_export=options.keep_export, grant=options.grant_elasticache, digest=options.digest,
        encryption=options.encryption, poll_seconds=options.poll_seconds, echo=options.echo,
        aws=options.source_s3 or repo.s3)
    with _backup_lock(repo, options):
        return elasticache_backup(source, repo, settings, progress_for=progress_for)


def _backup_lock(repo: Repository, options: BackupOptions) -> contextlib.AbstractContextManager[Lease]:
    return shared_lock(repo, "backup", retry_for=options.lock_wait, waiting=options.lock_waiting)


class _Job:
    """What every kind of source shares: the snapshot id, cleanup on failure, the manifest."""

    source_type = ""

    def __init__(self, repo: Repository, options: BackupOptions, progress_for: ProgressFactory | None,
                 source_name: str) -> None:
        self.repo = repo
        self.options = options
        self.progress_for = progress_for
        self.created = datetime.now(timezone.utc)
        self.id = new_snapshot_id(source_name, self.created)
        self.sealer: Sealer | None = None

    def run(self) -> Manifest:
        if self.options.encryption is not None:
            self.sealer = self.options.encryption.seal(self.id)  # for KMS: this snapshot's data key
            self.sealer.prepare()
        try:
            source, files = self.collect()
        except BaseException:
            with contextlib.suppress(Exception):  # leave nothing behind that gc would have to find
                self.repo.remove(snapshot_dir(self.id), recursive=True)
            raise
        source["type"] = self.source_type
        return Manifest(id=self.id, created=self.created.isoformat(timespec="seconds").replace("+00:00", "Z"),
                        kind=self.options.kind, source=source, files=files, tags=list(self.options.tags),
                        encryption=self.sealer.record if self.sealer is not None else None)

    def collect(self) -> tuple[dict, list[FileEntry]]:
        raise NotImplementedError

    def store(self, stream: BinaryIO, index: int, where: str, label: str, size: int | None,
              target: Target | None) -> FileEntry:
        progress = self.progress_for(label, size) if self.progress_for is not None else None
        name = shard_file_name(self.id, index) + (self.sealer.suffix if self.sealer is not None else "")
        return ingest(stream, self.repo, self.id, name, where=where, expected_size=size, digest=self.options.digest,
                      digest_target=target, progress=progress, sealer=self.sealer)


class _FileBackup(_Job):
    source_type = "file"

    def __init__(self, path: str, repo: Repository, options: BackupOptions,
                 progress_for: ProgressFactory | None) -> None:
        name = os.path.basename(path.rstrip("/")).rsplit(".", 1)[0] or "file"
        super().__init__(repo, options, progress_for, name)
        self.path = path

    def collect(self) -> tuple[dict, list[FileEntry]]:
        with _open_source_file(self.path, self.options.source_s3) as (stream, size):
            entry = self.store(stream, 1, self.path, os.path.basename(self.path), size, None)
        entry.role = "file"
        return {"url": _redact_path(self.path), "engine": entry.written_by}, [entry]


@contextlib.contextmanager
def _open_source_file(path: str, s3: S3Settings | None) -> Iterator[tuple[BinaryIO, int | None]]:
    """A source RDB by path or URL (file://, s3://, http(s)://), with its size when known."""
    if "://" not in path or path.startswith("file://"):
        local = path[len("file://"):] if path.startswith("file://") else path
        with open(local, "rb") as f:
            yield f, os.fstat(f.fileno()).st_size
        return
    import fsspec

    try:
        if path.startswith("s3://"):
            fs = (s3 or S3Settings()).filesystem()
        else:
            fs = fsspec.filesystem(path.split("://", 1)[0])
        size = fs.size(path)
        f = fs.open(path, "rb", block_size=8 << 20)
    except FileNotFoundError:
        raise SnaptoolError(f"{_redact_path(path)}: not found") from None
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp errors become one line
        raise SnaptoolError(f"cannot open {_redact_path(path)}: {type(exc).__name__}: {exc}") from None
    with f:
        yield f, size


def _redact_path(path: str) -> str:
    """A source URL without query strings (presigned URLs carry credentials there)."""
    return path.split("?", 1)[0]


def _engine_info(address: NodeAddress) -> tuple[str, Target | None]:
    """("valkey-8.1.8", Target) of a live node, from INFO server."""
    client = address.client()
    try:
        info = client.info("server")
    except redis.RedisError as exc:
        raise EngineError(f"{address} did not answer INFO: {exc}") from None
    finally:
        client.close()
    if info.get("valkey_version") or info.get("server_name") == "valkey":
        name = f"valkey-{info.get('valkey_version') or info.get('redis_version')}"
    else:
        name = f"redis-{info.get('redis_version')}"
    try:
        target = parse_target(".".join(name.split(".")[:2]))
    except SnaptoolError:
        target = None
    return name, target


class _NodeBackup(_Job):
    source_type = "node"

    def __init__(self, address: NodeAddress, repo: Repository, options: BackupOptions,
                 progress_for: ProgressFactory | None) -> None:
        super().__init__(repo, options, progress_for, f"{address.host}-{address.port}")
        self.address = address

    def collect(self) -> tuple[dict, list[FileEntry]]:
        engine, target = _engine_info(self.address)
        entry = _stream_node(self, self.address, 1, self.address.endpoint, target)
        entry.node, entry.role = self.address.redacted(), _role(self.address)
        return {"url": self.address.redacted(), "engine": engine}, [entry]


def _role(address: NodeAddress) -> str:
    client = address.client()
    try:
        role = str(client.info("replication").get("role", "master"))
    finally:
        client.close()
    return "replica" if role in ("slave", "replica") else "primary"


def _stream_node(job: _Job, address: NodeAddress, index: int, label: str, target: Target | None,
                 cancelled: threading.Event | None = None) -> FileEntry:
    stream = open_rdb_stream(address, timeout=job.options.timeout)
    try:
        reader: BinaryIO = stream if cancelled is None else _Cancellable(stream, cancelled)
        return job.store(reader, index, address.redacted(), label, stream.info.size, target)
    finally:
        stream.close()


class _Cancellable:
    """Stops a shard's transfer when another shard of the same backup has failed."""

    def __init__(self, stream: BinaryIO, cancelled: threading.Event) -> None:
        self.stream = stream
        self.cancelled = cancelled

    def read(self, n: int = -1) -> bytes:
        if self.cancelled.is_set():
            raise BackupCancelled("stopped: another shard of this backup failed")
        return self.stream.read(n)


class _ClusterBackup(_Job):
    source_type = "cluster"

    def __init__(self, address: NodeAddress, repo: Repository, options: BackupOptions,
                 progress_for: ProgressFactory | None) -> None:
        super().__init__(repo, options, progress_for, f"cluster-{address.host}-{address.port}")
        self.address = address

    def _choose(self, shard: ClusterShard) -> tuple[ClusterNode, str]:
        """A replica that is connected and in sync, else the primary."""
        if not self.options.from_primary:
            for replica in shard.replicas:
                if replica.healthy and _link_up(self.address.with_endpoint(replica.host, replica.port)):
                    return replica, "replica"
        return shard.primary, "primary"

    def collect(self) -> tuple[dict, list[FileEntry]]:
        shards = read_topology(self.address)
        engine, target = _engine_info(self.address)
        chosen = [self._choose(shard) for shard in shards]
        cancelled = threading.Event()

        def one(index: int) -> FileEntry:
            node, role = chosen[index]
            address = self.address.with_endpoint(node.host, node.port)
            try:
                entry = _stream_node(self, address, index + 1, f"shard-{index + 1:04d} {node.endpoint}",
                                     target, cancelled)
            except BaseException:
                cancelled.set()
                raise
            entry.shard = f"shard-{index + 1:04d}"
            entry.slots = [list(r) for r in shards[index].ranges]
            entry.node, entry.node_id, entry.role = address.redacted(), node.node_id, role
            return entry

        with ThreadPoolExecutor(max_workers=len(shards)) as pool:
            futures = [pool.submit(one, i) for i in range(len(shards))]
            errors = [f.exception() for f in futures]
        real = [e for e in errors if e is not None and not isinstance(e, BackupCancelled)]
        if real or any(errors):
            raise (real or [e for e in errors if e is not None])[0]
        files = [f.result() for f in futures]
        layout = [{"name": f.shard, "slots": f.slots, "node": f.node, "role": f.role} for f in files]
        return {"url": self.address.redacted(), "engine": engine, "layout": layout}, files


def _link_up(address: NodeAddress) -> bool:
    client = address.client()
    try:
        return str(client.info("replication").get("master_link_status")) == "up"
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
