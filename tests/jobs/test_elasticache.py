"""ElastiCache: the snapshot calls against moto's server, the export bucket preflight and grants on
moto S3, and the whole flow — snapshot, export, backup, drill, seed — against a fake behind the
interface that writes the RDB files a local cluster's engines SAVEd as ``<name>-000N.rdb``
objects into moto S3."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from snaptool.cloud.bucket import CANONICAL_ID, check_bucket, grant_elasticache, name_problems
from snaptool.cloud.elasticache import (Boto3ElastiCache, ElastiCacheError, parse_elasticache_url, parse_slots,
                                        wait_for_snapshot)
from snaptool.engines.cluster import LocalCluster
from snaptool.errors import LossyConversionError
from snaptool.jobs.backup import backup
from snaptool.jobs.drill import drill
from snaptool.jobs.elasticache_backup import ElastiCacheBackupOptions, elasticache_backup
from snaptool.jobs.seed import SeedError, SeedOptions, check_version, seed
from snaptool.jobs.split import split
from snaptool.rdb.slots import SlotLayout
from snaptool.rdb.targets import parse_target
from snaptool.schedule import EventLog, parse_config, run_job
from snaptool.storage.catalog import Catalog
from snaptool.storage.repository import Repository

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REGION = "us-east-1"


def _bucket(region: str = REGION) -> str:
    name = f"ec-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def _no_wait(_: float) -> None:
    """Polls run back to back: the fakes change state on every call."""


# --------------------------------------------------------------------------- moto: snapshot calls

def test_snapshot_calls_against_moto(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    group = f"g{uuid.uuid4().hex[:8]}"
    boto3.client("elasticache").create_replication_group(
        ReplicationGroupId=group, ReplicationGroupDescription="t", Engine="redis", CacheNodeType="cache.t3.micro",
        NumNodeGroups=1, ReplicasPerNodeGroup=1)
    api = Boto3ElastiCache.connect(REGION)
    assert api.describe_replication_group(group)["ReplicationGroupId"] == group
    assert api.describe_replication_group("nope") is None and api.describe_cache_cluster("nope") is None
    created = api.create_snapshot(f"snaptool-{group}", replication_group=group)
    assert created["ReplicationGroupId"] == group
    snapshot = wait_for_snapshot(api, f"snaptool-{group}", poll_seconds=0, timeout=10, sleep=_no_wait)
    assert snapshot["SnapshotStatus"] == "available"
    api.delete_snapshot(f"snaptool-{group}")
    assert api.describe_snapshot(f"snaptool-{group}") is None
    with pytest.raises(ElastiCacheError, match=r"^ElastiCache DeleteSnapshot in us-east-1: SnapshotNotFoundFault"):
        api.delete_snapshot(f"snaptool-{group}")


def test_a_failed_export_deletes_the_snapshot_and_leaves_no_manifest(s3_env: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """moto has no CopySnapshot: the export fails, as a real one can, after the snapshot exists."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    group = f"g{uuid.uuid4().hex[:8]}"
    boto3.client("elasticache").create_replication_group(
        ReplicationGroupId=group, ReplicationGroupDescription="t", Engine="redis", CacheNodeType="cache.t3.micro",
        NumCacheClusters=2)
    bucket = _bucket()
    repo = Repository.open(str(tmp_path / "repo"))
    lines: list[str] = []
    options = ElastiCacheBackupOptions(export_bucket=bucket, grant=True, poll_seconds=0, sleep=_no_wait,
                                       echo=lines.append)
    with pytest.raises(ElastiCacheError, match="ElastiCache CopySnapshot in us-east-1") as info:
        elasticache_backup(f"elasticache://{group}?region={REGION}", repo, options)
    assert "\n" not in str(info.value)
    assert boto3.client("elasticache").describe_snapshots(ReplicationGroupId=group)["Snapshots"] == []
    assert any(line.startswith("deleted ElastiCache snapshot snaptool-") for line in lines)
    assert Catalog(repo).list() == []


# --------------------------------------------------------------------------- the export bucket

def test_preflight_lists_everything_the_bucket_lacks_before_starting(s3_env: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    group = f"g{uuid.uuid4().hex[:8]}"
    boto3.client("elasticache").create_replication_group(
        ReplicationGroupId=group, ReplicationGroupDescription="t", Engine="redis", CacheNodeType="cache.t3.micro",
        NumCacheClusters=1)
    elsewhere = _bucket("eu-west-1")
    repo = Repository.open(str(tmp_path / "repo"))
    options = ElastiCacheBackupOptions(export_bucket=f"s3://{elsewhere}", poll_seconds=0, sleep=_no_wait)
    with pytest.raises(ElastiCacheError) as info:
        elasticache_backup(f"elasticache://{group}?region={REGION}", repo, options)
    message = str(info.value)
    assert "is in eu-west-1, ElastiCache works in us-east-1" in message
    assert "does not grant ElastiCache" in message and "READ, WRITE, READ_ACP, WRITE_ACP" in message
    assert "--grant-elasticache" in message
    assert boto3.client("elasticache").describe_snapshots(ReplicationGroupId=group)["Snapshots"] == []


def test_grants_by_acl_and_by_bucket_policy(s3_env: str) -> None:
    s3 = boto3.client("s3")
    bucket = _bucket()
    assert not check_bucket(s3, bucket, REGION).ok
    done = grant_elasticache(s3, bucket, REGION)
    assert "READ, WRITE, READ_ACP, WRITE_ACP" in done and check_bucket(s3, bucket, REGION).ok
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert {g["Permission"] for g in grants if g["Grantee"].get("ID") == CANONICAL_ID} == \
        {"READ", "WRITE", "READ_ACP", "WRITE_ACP"}
    assert any(g["Permission"] == "FULL_CONTROL" for g in grants)  # the owner's grant is kept
    grant_elasticache(s3, bucket, REGION)  # twice: nothing doubled
    assert len(s3.get_bucket_acl(Bucket=bucket)["Grants"]) == len(grants)
    opt_in = _bucket("ap-east-1")  # a region launched after 2019: a bucket policy, not an ACL
    s3.put_bucket_policy(Bucket=opt_in, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "keep", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
         "Resource": f"arn:aws:s3:::{opt_in}"}]}))
    check = check_bucket(s3, opt_in, "ap-east-1")
    assert check.grant_via == "policy" and "ap-east-1.elasticache-snapshot.amazonaws.com" in check.summary()
    grant_elasticache(s3, opt_in, "ap-east-1")
    assert check_bucket(s3, opt_in, "ap-east-1").ok
    sids = [s.get("Sid") for s in json.loads(s3.get_bucket_policy(Bucket=opt_in)["Policy"])["Statement"]]
    assert sids == ["keep", "snaptool-elasticache"]
    enforced = _bucket()
    s3.put_bucket_ownership_controls(Bucket=enforced, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert "ACLs are disabled" in check_bucket(s3, enforced, REGION).summary()


def test_names_urls_and_slots() -> None:
    assert name_problems("my-exports") == []
    for bad in ("My_Exports", "ab", "192.168.1.1", "a..b"):
        assert name_problems(bad), bad
    assert parse_elasticache_url("elasticache://Orders?region=eu-west-1").id == "orders"
    for bad in ("elasticache://", "redis://x", "elasticache://x?zone=1", "elasticache://9x"):
        with pytest.raises(ElastiCacheError):
            parse_elasticache_url(bad)
    assert parse_slots("0-5460") == [[0, 5460]] and parse_slots("0-10,12,20-30") == [[0, 10], [12, 12], [20, 30]]


def test_version_gate_names_the_target_that_works() -> None:
    assert check_version(9, "redis-6.2", None) == 9
    assert check_version(11, "valkey-8.0", None) == 11
    assert check_version(11, "valkey-9.0", None) == 11  # Valkey 9 still loads RDB 11
    with pytest.raises(SeedError, match=r"the snapshot is RDB 11, but ElastiCache redis-7.1 loads RDB 10 at "
                                        r"most: use --target redis-7.0"):
        check_version(11, "redis-7.1", None)
    with pytest.raises(SeedError, match="--target valkey-8.1 writes RDB 11, .* use --target redis-6.2"):
        check_version(11, "redis-6.2", parse_target("valkey-8.1"))
    with pytest.raises(SeedError, match="RDB 12 .* loads on no ElastiCache engine"):
        check_version(12, None, None)
    with pytest.raises(SeedError, match="use --target valkey-9.0"):
        check_version(12, "valkey-9.0", None)


# --------------------------------------------------------------------------- end to end with a fake

class FakeElastiCache:
    """Plays ElastiCache for one replication group backed by a local cluster: a snapshot is a SAVE
    on every primary; the export writes those files as ``<name>-000N.rdb`` into the bucket."""

    def __init__(self, group: str, cluster: LocalCluster, work: Path) -> None:
        self.region = REGION
        self.group = group
        self.cluster = cluster
        self.work = work
        self.calls: list[str] = []
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.saved: dict[str, list[Path]] = {}
        self.exported: list[str] = []  # keys the export wrote
        self.export_ends = "available"  # the status the snapshot reaches after exporting

    def _snapshot(self, name: str, status: str) -> dict[str, Any]:
        nodes = [{"CacheClusterId": f"{self.group}-{i:04d}-001", "NodeGroupId": f"{i:04d}", "CacheNodeId": "0001",
                  "NodeGroupConfiguration": {"NodeGroupId": f"{i:04d}",
                                             "Slots": ",".join(f"{a}-{b}" for a, b in shard.ranges)}}
                 for i, shard in enumerate(self.cluster.layout.shards, 1)]
        return {"SnapshotName": name, "ReplicationGroupId": self.group, "SnapshotStatus": status,
                "Engine": "redis", "EngineVersion": "7.0.15", "CacheNodeType": "cache.r7g.large",
                "NumNodeGroups": len(nodes), "NodeSnapshots": nodes,
                "ARN": f"arn:aws:elasticache:{REGION}:123456789012:snapshot:{name}"}

    def describe_replication_group(self, group_id: str) -> dict[str, Any] | None:
        self.calls.append("DescribeReplicationGroups")
        return {"ReplicationGroupId": self.group, "Engine": "redis", "ClusterEnabled": True} \
            if group_id == self.group else None

    def describe_cache_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        self.calls.append("DescribeCacheClusters")
        return None

    def create_snapshot(self, name: str, *, replication_group: str | None = None,
                        cache_cluster: str | None = None) -> dict[str, Any]:
        self.calls.append("CreateSnapshot")
        assert replication_group == self.group and cache_cluster is None
        saved = []
        for i, node in enumerate(self.cluster.nodes, 1):
            dest = self.work / f"{name}-{i:04d}.rdb"
            shutil.copyfile(node.save(), dest)  # what the engine wrote
            saved.append(dest)
        self.saved[name] = saved
        self.snapshots[name] = {"steps": ["creating", "available"]}
        return self._snapshot(name, "creating")

    def describe_snapshot(self, name: str) -> dict[str, Any] | None:
        self.calls.append("DescribeSnapshots")
        state = self.snapshots.get(name)
        if state is None:
            return None
        status = state["steps"].pop(0) if len(state["steps"]) > 1 else state["steps"][0]
        return self._snapshot(name, status)

    def copy_snapshot(self, source_name: str, target_name: str, bucket: str) -> dict[str, Any]:
        self.calls.append("CopySnapshot")
        s3 = boto3.client("s3")
        for path in self.saved[source_name]:
            key = path.name.replace(source_name, target_name)
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            self.exported.append(key)
        self.snapshots[source_name]["steps"] = ["exporting", "exporting", self.export_ends]
        return self._snapshot(source_name, "exporting")

    def delete_snapshot(self, name: str) -> dict[str, Any]:
        self.calls.append("DeleteSnapshot")
        self.snapshots.pop(name)
        return self._snapshot(name, "deleting")


@pytest.fixture
def cluster(get_engine, tmp_path: Path) -> Iterator[LocalCluster]:
    shards = split([str(FIXTURES / "redis-7.0.rdb")], tmp_path / "shards", SlotLayout.even(3),
                   db_map={1: 0, 5: 0}, on_duplicate="first")
    files = [tmp_path / "shards" / s.file for s in shards.shards]
    with LocalCluster(get_engine("redis-7.0"), SlotLayout.even(3), files) as running:
        yield running


def test_export_backup_drill_and_seed_of_a_cluster(s3_env: str, cluster: LocalCluster, tmp_path: Path,
                                                   get_engine) -> None:
    get_engine("redis-6.2")  # the seed below is proven on a Redis 6.2 cluster
    fake = FakeElastiCache("orders", cluster, tmp_path)
    export, home = _bucket(), _bucket()
    repo = Repository.open(f"s3://{home}/redis")
    lines: list[str] = []
    options = ElastiCacheBackupOptions(export_bucket=export, grant=True, poll_seconds=0, sleep=_no_wait,
                                       tags=("nightly",), pinned=True, echo=lines.append, api=fake)
    manifest = elasticache_backup("elasticache://orders?region=us-east-1", repo, options)
    assert fake.calls == ["DescribeReplicationGroups", "CreateSnapshot", "DescribeSnapshots", "DescribeSnapshots",
                          "CopySnapshot", "DescribeSnapshots", "DescribeSnapshots", "DescribeSnapshots",
                          "DeleteSnapshot"]
    assert fake.snapshots == {}  # the manual snapshot is gone
    assert boto3.client("s3").list_objects_v2(Bucket=export).get("KeyCount") == 0  # and the export
    assert manifest.source["type"] == "elasticache" and manifest.source["engine"] == "redis-7.0.15"
    assert manifest.tags == ["nightly"] and manifest.source["elasticache"]["snapshot"].startswith("snaptool-")
    assert Catalog(repo).resolve(manifest.id).pinned  # as stored: kept by every prune
    assert [f.slots for f in manifest.files] == [[list(r) for r in s.ranges] for s in cluster.layout.shards]
    saved = fake.saved[manifest.source["elasticache"]["snapshot"]]
    assert [f.sha256 for f in manifest.files] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in saved]
    assert manifest.keys == sum(node.client().dbsize() for node in cluster.nodes)
    assert "snapshot snaptool-" in lines[0] and any("exporting" in line for line in lines)
    result = drill(manifest.id, repo)  # a fresh 3-node cluster loads the files; every key compared
    assert result.ok, [c for c in result.checks if not c.ok]

    seeds = _bucket()
    with pytest.raises(SeedError, match="the snapshot is RDB 10, but ElastiCache redis-6.2 loads RDB 9 at most: "
                                        "use --target redis-6.2"):
        seed(manifest.id, repo, SeedOptions(to=f"s3://{seeds}/dr", engine_version="redis-6.2"))
    assert boto3.client("s3").list_objects_v2(Bucket=seeds).get("KeyCount") == 0  # refused before any work
    with pytest.raises(LossyConversionError, match="redis-6.2 .* cannot hold 2 functions"):
        seed(manifest.id, repo, SeedOptions(to=f"s3://{seeds}/dr", target=parse_target("redis-6.2")))
    assert boto3.client("s3").list_objects_v2(Bucket=seeds).get("KeyCount") == 0  # nothing half-written
    plan = seed(manifest.id, repo, SeedOptions(to=f"s3://{seeds}/dr", engine_version="redis-6.2", allow_lossy=True,
                                               target=parse_target("redis-6.2"), grant_elasticache=True))
    assert plan.problems == [] and plan.rdb_version == 9 and "READ grant" in (plan.grant or "")
    assert plan.node_group_configuration == [{"NodeGroupId": f"{i:04d}", "Slots": f"{a}-{b}"}
                                             for i, (a, b) in enumerate((s.ranges[0] for s in cluster.layout.shards), 1)]
    s3 = boto3.client("s3")
    for item in plan.objects:
        assert "," not in item.key and item.arn == f"arn:aws:s3:::{seeds}/{item.key}"
        head = s3.head_object(Bucket=seeds, Key=item.key)
        assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == item.size
        body = s3.get_object(Bucket=seeds, Key=item.key)["Body"].read()
        assert body[:9] == b"REDIS0009" and hashlib.sha256(body).hexdigest() == item.sha256
        grants = s3.get_object_acl(Bucket=seeds, Key=item.key)["Grants"]
        assert any(g["Grantee"].get("ID") == CANONICAL_ID and g["Permission"] == "READ" for g in grants)
    request = plan.create_replication_group_request("orders-dr", "cache.r7g.large")
    assert request["NumNodeGroups"] == 3 and request["Engine"] == "redis" and request["EngineVersion"] == "6.2"
    boto3.client("elasticache", region_name=REGION).create_replication_group(**request)  # moto takes it (it does not read S3)
    two = seed(manifest.id, repo, SeedOptions(to=f"s3://{seeds}/two", shards=2, target=parse_target("redis-6.2"),
                                              allow_lossy=True))
    assert [o.slots for o in two.objects] == ["0-8191", "8192-16383"]
    assert any("does not grant ElastiCache READ" in p for p in two.problems)  # no --grant-elasticache


def _keys(bucket: str) -> list[str]:
    return [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_failed_export_removes_the_objects_it_wrote(s3_env: str, cluster: LocalCluster, tmp_path: Path) -> None:
    """ElastiCache wrote the shard files, then the export ended failed: they are found by listing and
    deleted, with the snapshot; with keep_export they stay."""
    fake = FakeElastiCache("orders", cluster, tmp_path)
    fake.export_ends = "failed"
    export = _bucket()
    repo = Repository.open(str(tmp_path / "repo"))
    lines: list[str] = []
    options = ElastiCacheBackupOptions(export_bucket=export, grant=True, poll_seconds=0, sleep=_no_wait,
                                       echo=lines.append, api=fake)
    with pytest.raises(ElastiCacheError, match=r"^ElastiCache snapshot snaptool-\S+ in us-east-1 is failed$"):
        elasticache_backup("elasticache://orders?region=us-east-1", repo, options)
    assert len(fake.exported) == 3 and _keys(export) == []  # written, then removed
    assert f"deleted 3 exported object(s) s3://{export}/" in "\n".join(lines)
    assert fake.snapshots == {} and fake.calls[-1] == "DeleteSnapshot" and Catalog(repo).list() == []
    fake.exported.clear()
    options.keep_export = True
    with pytest.raises(ElastiCacheError, match="is failed"):
        elasticache_backup("elasticache://orders?region=us-east-1", repo, options)
    assert sorted(fake.exported) == _keys(export) and len(fake.exported) == 3  # kept, as asked
    assert fake.snapshots == {} and Catalog(repo).list() == []


def test_keep_source_and_keep_export_keep_them(s3_env: str, cluster: LocalCluster, tmp_path: Path) -> None:
    fake = FakeElastiCache("orders", cluster, tmp_path)
    export = _bucket()
    repo = Repository.open(str(tmp_path / "repo"))
    options = ElastiCacheBackupOptions(export_bucket=export, grant=True, poll_seconds=0, sleep=_no_wait, api=fake,
                                       keep_source=True, keep_export=True)
    manifest = elasticache_backup("elasticache://orders?region=us-east-1", repo, options)
    name = manifest.source["elasticache"]["snapshot"]
    assert list(fake.snapshots) == [name] and "DeleteSnapshot" not in fake.calls  # the manual snapshot stays
    assert manifest.source["elasticache"]["kept"] is True
    assert _keys(export) == [f"{name}-{i:04d}.rdb" for i in (1, 2, 3)]  # and so does the export
    s3 = boto3.client("s3")
    assert [hashlib.sha256(s3.get_object(Bucket=export, Key=k)["Body"].read()).hexdigest() for k in _keys(export)] \
        == [f.sha256 for f in manifest.files]
    assert Catalog(repo).resolve("latest").id == manifest.id


def test_seed_of_a_standalone_snapshot(s3_env: str, tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(str(FIXTURES / "valkey-8.1.rdb"), repo)
    bucket = _bucket()
    with pytest.raises(SeedError, match="use --target redis-7.0"):
        seed(manifest.id, repo, SeedOptions(to=f"s3://{bucket}/x", engine_version="redis-7.0"))
    with pytest.raises(SeedError, match="commas"):
        seed(manifest.id, repo, SeedOptions(to=f"s3://{bucket}/a,b"))
    plan = seed(manifest.id, repo, SeedOptions(to=f"s3://{bucket}", engine_version="valkey-8.0"))
    (item,) = plan.objects
    assert item.key == f"{manifest.id}.rdb" and item.node_group is None and plan.rdb_version == 11
    request = plan.create_replication_group_request("cache-dr", "cache.t4g.small", replicas=1)
    assert request["NumCacheClusters"] == 2 and "NodeGroupConfiguration" not in request
    assert request["SnapshotArns"] == [f"arn:aws:s3:::{bucket}/{manifest.id}.rdb"]
    assert re.fullmatch(r"[^,]+", item.key)


def _cli(*args: str) -> int:
    """The command line, in this process."""
    from snaptool.cli.main import main
    return main(list(args))


def test_seed_and_check_bucket_from_the_command_line(s3_env: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    bucket = _bucket()
    assert _cli("check-bucket", bucket, "--region", REGION) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not grant ElastiCache" in err[0]
    assert _cli("check-bucket", f"s3://{bucket}", "--region", REGION, "--grant-elasticache") == 0
    assert "is ready for ElastiCache to export" in capsys.readouterr().out
    repo = str(tmp_path / "repo")
    manifest = backup(str(FIXTURES / "redis-6.2.rdb"), Repository.open(repo))
    assert _cli("seed", "latest", "--repo", repo, "--to", f"s3://{bucket}/seed", "--engine-version", "redis-5.0",
                "--grant-elasticache", "--replication-group-id", "cache-dr") == 0
    out, err = capsys.readouterr()
    assert f"SnapshotArns: arn:aws:s3:::{bucket}/seed/{manifest.id}.rdb" in out
    assert "aws elasticache create-replication-group --region us-east-1 --replication-group-id cache-dr" in out
    assert "--engine redis --engine-version 5.0" in out and err == ""
    assert _cli("seed", "latest", "--repo", repo, "--to", f"s3://{bucket}/seed", "--engine-version", "redis-4.0") == 1
    err = capsys.readouterr().err.strip()
    assert err == ("snaptool: error: the snapshot is RDB 9, but ElastiCache redis-4.0 loads RDB 8 at most: "
                   "use --target redis-4.0")


def _one_error_line(capsys: pytest.CaptureFixture, steps: list[str] | None = None) -> str:
    """The one error line (last); any lines before it are steps (``snaptool: …``), kept in ``steps``."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("snaptool: error: "), err
    assert all(line.startswith("snaptool: ") and "error" not in line for line in err[:-1]), err
    if steps is not None:
        steps.extend(err[:-1])
    return err[-1][len("snaptool: error: "):]


def test_backup_of_elasticache_from_the_command_line_refuses_in_one_line(
        s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The command line cannot be handed a fake ElastiCache, so its refusals are checked against moto:
    each is one line, exit 1, nothing in the repository, no manual snapshot left behind."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    repo = str(tmp_path / "repo")
    export = _bucket()
    group = f"g{uuid.uuid4().hex[:8]}"
    elasticache = boto3.client("elasticache", region_name=REGION)
    elasticache.create_replication_group(ReplicationGroupId=group, ReplicationGroupDescription="t", Engine="redis",
                                         CacheNodeType="cache.t3.micro", NumCacheClusters=1)
    url = f"elasticache://{group}?region={REGION}"
    assert _cli("backup", url, "--repo", repo) == 1
    assert _one_error_line(capsys) == "elasticache:// needs --export-bucket (a bucket in the cluster's region)"
    assert _cli("backup", "elasticache://nosuchgroup?region=eu-west-1", "--export-bucket", export, "--repo", repo) == 1
    assert _one_error_line(capsys) == "no ElastiCache replication group or cache cluster 'nosuchgroup' in eu-west-1"
    assert _cli("backup", url, "--export-bucket", export, "--repo", repo) == 1  # no grant: refused before starting
    assert "does not grant ElastiCache" in _one_error_line(capsys)
    assert _cli("backup", url, "--export-bucket", export, "--grant-elasticache", "--poll-seconds", "0",
                "--repo", repo) == 1  # moto has no CopySnapshot: the export fails after the snapshot exists
    steps: list[str] = []
    assert _one_error_line(capsys, steps).startswith("ElastiCache CopySnapshot in us-east-1: ")
    assert steps[0].startswith("snaptool: creating ElastiCache snapshot snaptool-")  # the steps reach stderr
    assert any(line.startswith("snaptool: deleted ElastiCache snapshot ") for line in steps), steps
    assert elasticache.describe_snapshots(ReplicationGroupId=group)["Snapshots"] == []  # cleaned up
    monkeypatch.delenv("AWS_REGION")
    assert _cli("backup", f"elasticache://{group}", "--export-bucket", export, "--repo", repo) == 1
    assert _one_error_line(capsys) == (f"elasticache://{group}: say which region "
                                       f"(elasticache://{group}?region=R, or AWS_REGION)")
    assert Catalog(Repository.open(repo)).list() == []


def test_seed_of_databases_that_share_key_names_needs_a_duplicate_policy(s3_env: str, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """--db-map 1:0,5:0 brings together keys of the same name: refused by default (nothing uploaded),
    seeded with --on-duplicate last, the kept copies proven on a local cluster before the upload."""
    repo = str(tmp_path / "repo")
    backup(str(FIXTURES / "redis-7.0.rdb"), Repository.open(repo))
    bucket = _bucket()
    for command in ("seed", "export"):
        assert _cli(command, "latest", "--repo", repo, "--to", f"s3://{bucket}/s", "--shards", "3",
                    "--db-map", "1:0,5:0") == 1
        line = _one_error_line(capsys)
        assert "appear in more than one place" in line and line.endswith("choose --on-duplicate first or last")
        assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # nothing half-written
    assert _cli("seed", "latest", "--repo", repo, "--to", f"s3://{bucket}/s", "--shards", "3",
                "--db-map", "1:0,5:0", "--on-duplicate", "last", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["objects"]) == 3
    for item in plan["objects"]:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=item["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == item["sha256"]


def test_an_encrypted_snapshot_is_seeded_as_plain_rdb_under_sse_s3(s3_env: str, tmp_path: Path) -> None:
    """ElastiCache reads only plain RDB (SSE-S3 at most): the seed decrypts, and says so by its bytes."""
    from snaptool.crypto import DecryptionKeys, EncryptionOptions
    from snaptool.jobs.backup import BackupOptions
    from snaptool.storage.repository import S3Settings

    secret = b"seed test passphrase"
    repo = Repository.open(f"s3://{_bucket()}/r", s3=S3Settings(sse="aws:kms"))  # the repository itself: SSE-KMS
    manifest = backup(str(FIXTURES / "valkey-8.1.rdb"), repo,
                      BackupOptions(encryption=EncryptionOptions("passphrase", passphrase=secret)))
    bucket = _bucket()
    plan = seed(manifest.id, repo, SeedOptions(to=f"s3://{bucket}/s", keys=DecryptionKeys(passphrase=secret),
                                               aws=repo.s3, grant_elasticache=True))
    (item,) = plan.objects
    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=bucket, Key=item.key)
    assert head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head
    body = s3.get_object(Bucket=bucket, Key=item.key)["Body"].read()
    assert body == (FIXTURES / "valkey-8.1.rdb").read_bytes() and plan.problems == []


def test_a_seed_takes_none_of_the_repository_bucket_settings(s3_env: str, tmp_path: Path) -> None:
    """Object lock, storage class, SSE-KMS and a canned ACL belong to the repository's bucket: the seed
    objects are plain SSE-S3 objects in another bucket, deletable once the cluster is created."""
    from datetime import datetime, timedelta, timezone

    from snaptool.storage.catalog import file_path
    from snaptool.storage.repository import S3Settings

    s3 = boto3.client("s3")
    locked = f"ec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    repo = Repository.open(f"s3://{locked}/r", s3=S3Settings(
        object_lock_mode="GOVERNANCE", object_lock_retain_until=until, storage_class="STANDARD_IA", sse="aws:kms",
        acl="bucket-owner-full-control"))
    manifest = backup(str(FIXTURES / "valkey-8.1.rdb"), repo)
    stored = s3.head_object(Bucket=locked, Key=f"r/{file_path(manifest.id, manifest.files[0].name)}")
    assert stored["ObjectLockMode"] == "GOVERNANCE" and stored["StorageClass"] == "STANDARD_IA"
    seeds = _bucket()  # no object lock here
    plan = seed(manifest.id, repo, SeedOptions(to=f"s3://{seeds}/s", aws=repo.s3))
    (item,) = plan.objects
    head = s3.head_object(Bucket=seeds, Key=item.key)
    assert head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head
    assert "StorageClass" not in head and "ObjectLockMode" not in head  # STANDARD, unlocked
    s3.delete_object(Bucket=seeds, Key=item.key)  # the staging copy goes once the cluster exists
    assert s3.list_objects_v2(Bucket=seeds).get("KeyCount") == 0


def test_export_to_s3_is_the_seed(s3_env: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``export ID --repo R --to s3://…`` seeds; ``export FILE`` still writes keys."""
    from snaptool.cli.main import main

    repo = str(tmp_path / "repo")
    manifest = backup(str(FIXTURES / "valkey-8.1.rdb"), Repository.open(repo))
    bucket = _bucket()
    assert main(["export", "latest", "--repo", repo, "--to", f"s3://{bucket}/seed", "--engine-version", "redis-7.1",
                 "--target", "redis-7.0", "--grant-elasticache", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    key = f"seed/{manifest.id}.rdb"
    assert plan["rdb_version"] == 10 and plan["SnapshotArns"] == [f"arn:aws:s3:::{bucket}/{key}"]
    assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()[:9] == b"REDIS0010"
    out = tmp_path / "keys.jsonl"
    assert main(["export", str(FIXTURES / "valkey-8.1.rdb"), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == manifest.keys
    assert main(["export", "latest", "--repo", repo]) == 2  # a seed without its destination
    assert "Missing option '--to'" in capsys.readouterr().err
    assert main(["export", "latest", "--repo", repo, "--to", f"s3://{bucket}/x", "--engine-version", "redis-7.1"]) == 1
    assert capsys.readouterr().err.strip() == ("snaptool: error: the snapshot is RDB 11, but ElastiCache redis-7.1 "
                                               "loads RDB 10 at most: use --target redis-7.0")


def test_a_scheduled_elasticache_backup_logs_its_steps(s3_env: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """What an ElastiCache backup says (the snapshot made, the export, what it deleted or could
    not delete) reaches the scheduler's log as `step` and `warning` events, not nowhere."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    group = f"g{uuid.uuid4().hex[:8]}"
    boto3.client("elasticache").create_replication_group(
        ReplicationGroupId=group, ReplicationGroupDescription="t", Engine="redis", CacheNodeType="cache.t3.micro",
        NumCacheClusters=1)
    config = parse_config({"job": [{
        "name": "managed", "source": f"elasticache://{group}?region={REGION}", "repository": str(tmp_path / "repo"),
        "schedule": "@daily", "elasticache": {"export_bucket": _bucket(), "grant_elasticache": True,
                                              "poll_seconds": 0.01}}]}, str(tmp_path / "schedule.toml"))
    log = EventLog(io.StringIO(), "json", keep=True)
    outcome = run_job(config.jobs[0], clock=lambda: datetime.now(timezone.utc), log=log)
    steps = [e["message"] for e in log.events if e["event"] == "step"]
    (failure,) = [e for e in log.events if e["event"] == "failure"]  # moto has no CopySnapshot
    assert not outcome.ok and "ElastiCache CopySnapshot" in failure["error"]
    assert steps[0].startswith("creating ElastiCache snapshot snaptool-") and steps[0].endswith(f"of {group}")
    assert any(line.startswith("deleted ElastiCache snapshot snaptool-") for line in steps)
    assert boto3.client("elasticache").describe_snapshots(ReplicationGroupId=group)["Snapshots"] == []
    line = EventLog(io.StringIO(), "text", keep=True)
    line(datetime.now(timezone.utc), "warning", "managed", message="could not delete the exported objects")
    assert line.events[0]["level"] == "warning" and "WARNING: could not delete" in line.out.getvalue()
