"""`snaptool seed`: a snapshot as RDB objects ElastiCache can create a cluster from.

ElastiCache seeds a new replication group from RDB files in S3 (``SnapshotArns``), one per shard,
with the slot range of each shard in ``NodeGroupConfiguration``. What it accepts: plain RDB files
(client-side encrypted or SSE-KMS objects cannot be read; SSE-S3 is the only encryption), names
without commas, an RDB version the cluster's engine loads, and read access for ElastiCache. This
job restores the snapshot into local files (decrypted, re-encoded for ``target``, re-split into
``shards``) and proves them on local engine nodes like ``restore --to-dir`` does, uploads them
with SSE-S3, grants ElastiCache read access when asked, and returns the plan to pass to
CreateReplicationGroup. A snapshot the engine cannot load is refused before any work, naming the
``--target`` that would make it load.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..cloud.bucket import check_bucket, grant_elasticache
from ..cloud.elasticache import ElastiCacheError, format_slots, s3_object_arn
from ..rdb.slots import SlotLayout
from ..rdb.targets import Target
from ..storage.catalog import Catalog
from ..storage.repository import Repository
from ..storage.s3 import S3Settings, split_s3_url
from .restore import RestoreOptions, restore

#: The highest RDB version each ElastiCache engine line loads. ElastiCache's Redis OSS 7.1 is built
#: on OSS 7.0 and is taken as RDB 10 (the safe side) until an export from it says otherwise.
ENGINE_RDB = {("redis", 4): 8, ("redis", 5): 9, ("redis", 6): 9, ("redis", 7): 10,
              ("valkey", 7): 11, ("valkey", 8): 11, ("valkey", 9): 80}
#: The snaptool target that writes what an engine loading RDB n reads.
TARGET_FOR = {8: "redis-4.0", 9: "redis-6.2", 10: "redis-7.0", 11: "valkey-8.1", 80: "valkey-9.0"}


class SeedError(ElastiCacheError):
    """A seed that cannot work as asked."""


@dataclass
class SeedOptions:
    to: str  # s3://bucket/prefix
    engine_version: str | None = None  # the new cluster's engine: redis-6.2, redis-7.1, valkey-8.0 …
    target: Target | None = None  # re-encode for this engine
    shards: int | None = None  # re-split into N shards (default: as the snapshot was taken)
    db_map: dict[int, int] = field(default_factory=dict)  # other databases into 0 for a cluster
    on_duplicate: str = "error"  # a key in two databases mapped together: error|first|last
    grant_elasticache: bool = False
    region: str | None = None  # where the cluster will be created (default: AWS_REGION, else us-east-1)
    engine: str | None = None  # local engine that proves the files
    allow_lossy: bool = False
    aws: S3Settings | None = None
    keys: Any = None  # decryption keys for an encrypted snapshot (KMS needs none)


@dataclass
class SeedObject:
    key: str
    arn: str
    size: int
    sha256: str
    node_group: str | None = None
    slots: str | None = None


@dataclass
class SeedPlan:
    snapshot: str
    bucket: str
    region: str
    rdb_version: int
    engine_version: str | None
    objects: list[SeedObject] = field(default_factory=list)
    grant: str | None = None  # what was granted to ElastiCache
    problems: list[str] = field(default_factory=list)  # what still stops ElastiCache reading the objects

    @property
    def snapshot_arns(self) -> list[str]:
        return [o.arn for o in self.objects]

    @property
    def node_group_configuration(self) -> list[dict[str, str]]:
        return [{"NodeGroupId": o.node_group, "Slots": o.slots} for o in self.objects if o.node_group and o.slots]

    def create_replication_group_request(self, group_id: str, node_type: str, *, replicas: int = 1,
                                         description: str | None = None) -> dict[str, Any]:
        """The CreateReplicationGroup parameters that seed a new group from these objects."""
        request: dict[str, Any] = {
            "ReplicationGroupId": group_id, "CacheNodeType": node_type,
            "ReplicationGroupDescription": description or f"seeded from snapshot {self.snapshot}",
            "SnapshotArns": self.snapshot_arns}
        if self.engine_version:
            flavour, version = _engine(self.engine_version)
            request["Engine"] = flavour
            request["EngineVersion"] = ".".join(map(str, version))
        groups = self.node_group_configuration
        if groups:
            request["NumNodeGroups"] = len(groups)
            request["NodeGroupConfiguration"] = [{**g, "ReplicaCount": replicas} for g in groups]
            request["AutomaticFailoverEnabled"] = True
        else:
            request["NumCacheClusters"] = 1 + replicas
            request["AutomaticFailoverEnabled"] = replicas > 0
        return request

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["SnapshotArns"] = self.snapshot_arns
        groups = self.node_group_configuration
        if groups:
            data["NumNodeGroups"] = len(groups)
            data["NodeGroupConfiguration"] = groups
        return data


def _engine(text: str) -> tuple[str, tuple[int, ...]]:
    match = re.fullmatch(r"(redis|valkey)-(\d+)(?:\.(\d+|x))?(?:\.\d+)?", text.strip().lower())
    if not match:
        raise SeedError(f"engine version {text!r}: use e.g. redis-6.2, redis-7.1, valkey-8.0")
    minor = match.group(3)
    return match.group(1), (int(match.group(2)), int(minor) if minor and minor != "x" else 0)


def max_rdb_for(engine_version: str) -> int:
    """The highest RDB version the ElastiCache engine ``engine_version`` loads."""
    flavour, version = _engine(engine_version)
    try:
        return ENGINE_RDB[(flavour, version[0])]
    except KeyError:
        known = ", ".join(f"{f}-{m}" for f, m in ENGINE_RDB)
        raise SeedError(f"ElastiCache has no {engine_version} engine that snaptool knows (lines: {known})") from None


def loads(engine_rdb: int, file_rdb: int) -> bool:
    """Whether an engine writing RDB ``engine_rdb`` loads a file of RDB ``file_rdb``: never a newer one,
    and Valkey 9 refuses the 12–79 range Redis 7.4+ uses."""
    return file_rdb <= engine_rdb and not (engine_rdb >= 80 and 12 <= file_rdb < 80)


def check_version(rdb_version: int, engine_version: str | None, target: Target | None) -> int:
    """The RDB version the seed files get; refuses one the engine cannot load, naming the --target."""
    out = target.rdb_version if target is not None else rdb_version
    if engine_version is None:
        if 12 <= out < 80:
            raise SeedError(f"RDB {out} (Redis 7.4 and later) loads on no ElastiCache engine: use --target "
                            "valkey-8.1 or --target redis-7.0 (and --engine-version to check the cluster's engine)")
        return out
    limit = max_rdb_for(engine_version)
    if loads(limit, out):
        return out
    fix = TARGET_FOR[limit]
    what = f"--target {target.name} writes RDB {out}" if target is not None else f"the snapshot is RDB {rdb_version}"
    raise SeedError(f"{what}, but ElastiCache {engine_version} loads RDB {limit} at most: use --target {fix}")


def seed(spec: str, repo: Repository, options: SeedOptions) -> SeedPlan:
    """Write snapshot ``spec`` as seed objects under ``options.to`` and return the plan."""
    bucket, prefix = split_s3_url(options.to)
    if "," in prefix:
        raise SeedError(f"{options.to}: ElastiCache refuses object names with commas")
    manifest = Catalog(repo).resolve(spec)
    rdb_version = max(f.rdb_version for f in manifest.files)
    out_version = check_version(rdb_version, options.engine_version, options.target)
    layout = SlotLayout.even(options.shards) if options.shards else manifest.layout()
    if layout is not None:
        several = [s.name for s in layout.shards if len(s.ranges) != 1]
        if several:
            raise SeedError(f"shard {several[0]} owns several slot ranges, and NodeGroupConfiguration takes one "
                            "range per shard: re-split with --shards N")
    aws = (options.aws or S3Settings()).connection().replace(sse="AES256")  # nothing of the repository's bucket
    s3 = aws.client("s3")
    region = options.region or aws.resolved_region() or "us-east-1"
    plan = SeedPlan(manifest.id, bucket, region, out_version, options.engine_version)
    dest = Repository.open(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}", s3=aws)
    with tempfile.TemporaryDirectory(prefix="snaptool-seed-") as work:
        report = restore(manifest.id, repo, RestoreOptions(
            to_dir=work, layout=layout if options.shards else None, db_map=options.db_map,
            on_duplicate=options.on_duplicate, target=options.target,
            engine=options.engine, allow_lossy=options.allow_lossy, keys=options.keys))
        paths = [Path(p) for p in report.files]
        for index, path in enumerate(paths, 1):
            name = f"{manifest.id}.shard-{index:04d}.rdb" if layout is not None else f"{manifest.id}.rdb"
            key = f"{prefix}/{name}" if prefix else name
            sha = _upload(dest, name, path)
            item = SeedObject(key, s3_object_arn(bucket, key, region), path.stat().st_size, sha)
            if layout is not None:
                item.node_group = f"{index:04d}"
                item.slots = format_slots(list(layout.shards[index - 1].ranges))
            plan.objects.append(item)
    keys = [o.key for o in plan.objects]
    if options.grant_elasticache:
        plan.grant = grant_elasticache(s3, bucket, region, "seed", keys)
    check = check_bucket(s3, bucket, region, "seed", keys)
    plan.problems = check.problems
    return plan


def _upload(dest: Repository, name: str, path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            sha.update(chunk)
    digest = sha.hexdigest()
    with open(path, "rb") as f, dest.writer(name, path.stat().st_size, sha256=digest) as out:
        while chunk := f.read(8 << 20):
            out.write(chunk)
    return digest
