"""`snaptool backup elasticache://<replication-group-or-cluster>?region=R`: a managed cluster into a
repository, through ElastiCache's own snapshot and export.

ElastiCache disables SYNC, PSYNC, SAVE and BGSAVE, so the only point-in-time copy of its data is a
snapshot. The job: checks the export bucket (region, name, grant) before anything starts;
CreateSnapshot; polls DescribeSnapshots until it is available; CopySnapshot into the bucket, which
writes one ``<name>-000N.rdb`` object per shard; polls again; streams every object into the
repository through :func:`~snaptool.jobs.ingest.ingest` (sha256, CRC-64 and counts in one pass),
with the slot ranges ElastiCache reports for node group 000N; writes the manifest last; then
deletes the exported objects and the manual snapshot (manual snapshots never expire) unless asked
to keep them. A failure on the way cleans up the same way and leaves no manifest: once CopySnapshot
was asked for, the bucket is listed for what ElastiCache wrote, since an export that times out or
fails may already have written some of its files.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..cloud.bucket import check_bucket, grant_elasticache
from ..cloud.elasticache import (Boto3ElastiCache, ElastiCacheApi, ElastiCacheError, parse_elasticache_url,
                                 parse_slots, wait_for_snapshot)
from ..storage.catalog import Catalog, shard_file_name, snapshot_dir
from ..storage.manifest import KINDS, FileEntry, Manifest, new_snapshot_id
from ..storage.repository import Repository
from ..storage.s3 import S3Settings, is_boto_error, split_s3_url
from .ingest import ProgressFn, ingest

if TYPE_CHECKING:  # cryptography is imported only for encrypted snapshots
    from ..crypto import EncryptionOptions, Sealer

ProgressFactory = Callable[[str, int | None], ProgressFn]
_EXPORTED = re.compile(r"-(\d{4})\.rdb$")


@dataclass
class ElastiCacheBackupOptions:
    export_bucket: str  # "bucket" or "s3://bucket", in the cluster's region
    kind: str = "manual"
    tags: tuple[str, ...] = ()
    pinned: bool = False  # never removed by retention
    keep_source: bool = False  # keep the manual ElastiCache snapshot
    keep_export: bool = False  # keep the exported .rdb objects in the export bucket
    grant: bool = False  # add the grant ElastiCache needs to the export bucket first
    digest: bool = False
    encryption: EncryptionOptions | None = None  # encrypt the files at rest, as backup --encrypt does
    aws: S3Settings | None = None  # credentials and endpoint for ElastiCache and the export bucket
    api: ElastiCacheApi | None = None  # default: boto3 in the URL's region
    poll_seconds: float = 15.0
    timeout: float = 6 * 3600.0  # for each wait (snapshot, then export)
    sleep: Callable[[float], None] = time.sleep
    echo: Callable[[str], None] | None = None  # progress and warnings, one line each


@dataclass
class _Run:
    options: ElastiCacheBackupOptions
    created_snapshot: str | None = None
    export_requested: bool = False  # CopySnapshot was asked for: objects may be in the bucket


def elasticache_backup(url: str, repo: Repository, options: ElastiCacheBackupOptions, *,
                       progress_for: ProgressFactory | None = None) -> Manifest:
    """Back up the ElastiCache replication group or cluster at ``url`` into ``repo``; returns the
    committed manifest."""
    if options.kind not in KINDS:
        raise ElastiCacheError(f"kind must be one of {', '.join(KINDS)}, not {options.kind!r}")
    if options.encryption is not None:
        options.encryption.check()  # bad keys fail before any snapshot is taken
    started = time.monotonic()
    source = parse_elasticache_url(url)
    aws = (options.aws or S3Settings()).connection()  # the export bucket is not the repository's
    region = source.region or aws.resolved_region()
    if not region:
        raise ElastiCacheError(f"{url}: say which region (elasticache://{source.id}?region=R, or AWS_REGION)")
    api = options.api or Boto3ElastiCache.connect(region, aws)
    bucket = _bucket_name(options.export_bucket)
    s3 = aws.replace(region=region).client("s3")
    group, cluster = _describe(api, source.id, region)
    created = datetime.now(timezone.utc)
    snapshot_id = new_snapshot_id(f"elasticache-{source.id}", created)
    name = f"snaptool-{snapshot_id.lower()}"
    _preflight(s3, bucket, region, name, options)
    run = _Run(options)
    say = options.echo or (lambda line: None)
    sealer = options.encryption.seal(snapshot_id) if options.encryption is not None else None
    try:
        say(f"creating ElastiCache snapshot {name} of {source.id}")
        api.create_snapshot(name, replication_group=source.id if group else None,
                            cache_cluster=None if group else source.id)
        run.created_snapshot = name
        wait = dict(poll_seconds=options.poll_seconds, timeout=options.timeout, sleep=options.sleep,
                    on_status=lambda status: say(f"snapshot {name}: {status}"))
        wait_for_snapshot(api, name, **wait)
        say(f"exporting {name} to s3://{bucket}")
        run.export_requested = True
        api.copy_snapshot(name, name, bucket)
        snapshot = wait_for_snapshot(api, name, **wait)
        exported = _exported_objects(s3, bucket, name)
        files, layout = _ingest_all(repo, snapshot_id, source.id, snapshot, exported, bucket,
                                    aws.replace(region=region), options, progress_for, sealer)
        engine = "-".join(filter(None, [str(snapshot.get("Engine") or (group or cluster or {}).get("Engine") or ""),
                                        str(snapshot.get("EngineVersion") or (cluster or {}).get("EngineVersion") or "")]))
        manifest = Manifest(
            id=snapshot_id, created=created.isoformat(timespec="seconds").replace("+00:00", "Z"), kind=options.kind,
            source={"url": source.url, "type": "elasticache", "engine": engine or None, "region": region,
                    **({"layout": layout} if layout else {}),
                    "elasticache": {"snapshot": name, "arn": snapshot.get("ARN"),
                                    "node_type": snapshot.get("CacheNodeType"),
                                    "export": f"s3://{bucket}/{name}-*.rdb",
                                    "kept": options.keep_source}},
            files=files, tags=list(options.tags), encryption=sealer.record if sealer is not None else None,
            pinned=options.pinned)
        manifest.seconds = round(time.monotonic() - started, 3)
        Catalog(repo).commit(manifest)
    except BaseException:
        with contextlib.suppress(Exception):
            repo.remove(snapshot_dir(snapshot_id), recursive=True)
        _cleanup(api, s3, bucket, name, run, say)
        raise
    _cleanup(api, s3, bucket, name, run, say)
    return manifest


def _bucket_name(text: str) -> str:
    if text.startswith("s3://"):
        bucket, key = split_s3_url(text)
        if key:
            raise ElastiCacheError(f"--export-bucket {text!r}: ElastiCache exports to the top of a bucket; "
                                   "give the bucket only")
        return bucket
    return text.strip("/")


def _describe(api: ElastiCacheApi, source_id: str, region: str) -> tuple[dict | None, dict | None]:
    """(replication group, cache cluster): which one ``source_id`` names, refusing what cannot be exported."""
    group = api.describe_replication_group(source_id)
    cluster = None if group else api.describe_cache_cluster(source_id)
    if group is None and cluster is None:
        raise ElastiCacheError(f"no ElastiCache replication group or cache cluster {source_id!r} in {region}")
    described = group or cluster or {}
    if str(described.get("Engine", "")).lower() == "memcached":
        raise ElastiCacheError(f"{source_id} runs Memcached: ElastiCache exports only Valkey and Redis OSS")
    if str(described.get("DataTiering", "")).lower() == "enabled":
        raise ElastiCacheError(f"{source_id} uses data tiering: ElastiCache cannot export its snapshots to S3")
    if cluster and cluster.get("ReplicationGroupId"):
        raise ElastiCacheError(f"{source_id} belongs to replication group {cluster['ReplicationGroupId']}: "
                               f"back up elasticache://{cluster['ReplicationGroupId']}?region={region}")
    return group, cluster


def _preflight(s3: Any, bucket: str, region: str, name: str, options: ElastiCacheBackupOptions) -> None:
    """Refuse, listing everything missing, before any snapshot is started."""
    check = check_bucket(s3, bucket, region, "export")
    if not check.ok and options.grant and check.bucket_region == region:
        grant_elasticache(s3, bucket, region, "export")
        check = check_bucket(s3, bucket, region, "export")
    taken = _exported_objects(s3, bucket, name, require=False)
    if taken:
        check.problems.append(f"s3://{bucket}/{taken[0]} already exists")
    if not check.ok:
        hint = "" if options.grant else " (--grant-elasticache adds the grant)"
        raise ElastiCacheError(check.summary() + hint)


def _exported_objects(s3: Any, bucket: str, name: str, require: bool = True) -> list[str]:
    """``<name>-000N.rdb`` keys in shard order."""
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{name}-"):
            keys.extend(o["Key"] for o in page.get("Contents", []) if _EXPORTED.search(o["Key"]))
    except Exception as exc:  # noqa: BLE001
        if is_boto_error(exc):
            raise ElastiCacheError(f"s3://{bucket}: cannot list the export: {exc}") from None
        raise
    keys.sort(key=lambda k: int(_EXPORTED.search(k).group(1)))  # type: ignore[union-attr]
    if require and not keys:
        raise ElastiCacheError(f"the export left no {name}-000N.rdb object in s3://{bucket}")
    return keys


def _ingest_all(repo: Repository, snapshot_id: str, source_id: str, snapshot: dict, keys: list[str], bucket: str,
                aws: S3Settings, options: ElastiCacheBackupOptions, progress_for: ProgressFactory | None,
                sealer: Sealer | None) -> tuple[list[FileEntry], list[dict]]:
    """Every exported object into the repository, with the slots of its node group."""
    groups = {str(n.get("NodeGroupId")): n for n in snapshot.get("NodeSnapshots") or [] if n.get("NodeGroupId")}
    sharded = any((n.get("NodeGroupConfiguration") or {}).get("Slots") for n in groups.values())
    if sharded and len(keys) != len(groups):
        raise ElastiCacheError(f"the export has {len(keys)} file(s) for {len(groups)} node group(s)")
    fs = aws.filesystem()
    files, layout = [], []
    for index, key in enumerate(keys, 1):
        number = _EXPORTED.search(key).group(1)  # type: ignore[union-attr]
        where = f"s3://{bucket}/{key}"
        try:
            size = fs.size(f"{bucket}/{key}")
            stream = fs.open(f"{bucket}/{key}", "rb", block_size=8 << 20)
        except Exception as exc:  # noqa: BLE001
            raise ElastiCacheError(f"{where}: cannot read the export: {type(exc).__name__}: {exc}") from None
        progress = progress_for(f"shard {number}", size) if progress_for is not None else None
        name = shard_file_name(snapshot_id, index) + (sealer.suffix if sealer is not None else "")
        with stream:
            entry = ingest(stream, repo, snapshot_id, name, where=where, expected_size=size, digest=options.digest,
                           progress=progress, sealer=sealer)
        node = groups.get(number)
        if sharded:
            if node is None:
                raise ElastiCacheError(f"{where}: no node group {number} in the snapshot's NodeSnapshots")
            entry.shard = f"shard-{index:04d}"
            entry.slots = parse_slots(node["NodeGroupConfiguration"]["Slots"])
            layout.append({"name": entry.shard, "slots": entry.slots, "node_group": number})
        entry.node = f"elasticache://{source_id}/{number}"
        if node is not None:
            entry.node_id = str(node.get("CacheClusterId") or "") or None
        entry.role = "snapshot"
        files.append(entry)
    return files, layout


def _cleanup(api: ElastiCacheApi, s3: Any, bucket: str, name: str, run: _Run, say: Callable[[str], None]) -> None:
    """Remove the exported objects and the manual snapshot unless kept; failures are reported, not raised."""
    if run.export_requested and not run.options.keep_export:
        _remove_export(s3, bucket, name, say)
    if run.created_snapshot and not run.options.keep_source:
        try:
            api.delete_snapshot(run.created_snapshot)
            say(f"deleted ElastiCache snapshot {run.created_snapshot}")
        except Exception as exc:  # noqa: BLE001 - the backup itself is fine; say what is left behind
            say(f"warning: ElastiCache snapshot {run.created_snapshot} was not deleted ({exc}); manual "
                "snapshots never expire: delete it yourself")


def _remove_export(s3: Any, bucket: str, name: str, say: Callable[[str], None]) -> None:
    """Delete every ``<name>-000N.rdb`` in the bucket (listed, not remembered: a failed export may have
    written some); a warning names what could not be deleted."""
    keys: list[str] = []
    try:
        keys = _exported_objects(s3, bucket, name, require=False)
        if not keys:
            return
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            raise ElastiCacheError(f"{errors[0].get('Code')}: {errors[0].get('Message')}")
        say(f"deleted {len(keys)} exported object(s) s3://{bucket}/{name}-*.rdb")
    except Exception as exc:  # noqa: BLE001 - the backup's own outcome matters more; say what is left
        left = ", ".join(f"s3://{bucket}/{k}" for k in keys) or f"s3://{bucket}/{name}-*.rdb"
        say(f"warning: could not delete the exported objects ({exc}); delete them yourself: {left}")
