"""ElastiCache requests checked against the real service model with botocore's Stubber (moto has
no CopySnapshot and no seeding): the backup's whole call sequence (encrypting the files at rest,
then drilled), the same for a single cache cluster and the sources refused before any snapshot,
its cleanup when the export is refused, and the CreateReplicationGroup request a seed plan produces."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from s3_support import FaultProxy

from snaptool.cloud.elasticache import Boto3ElastiCache, ElastiCacheError
from snaptool.crypto import DecryptionKeys, EncryptionOptions
from snaptool.jobs.drill import drill
from snaptool.jobs.elasticache_backup import ElastiCacheBackupOptions, elasticache_backup
from snaptool.jobs.seed import SeedObject, SeedPlan
from snaptool.jobs.split import split
from snaptool.rdb.slots import SlotLayout
from snaptool.storage.catalog import Catalog
from snaptool.storage.repository import Repository, S3Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
REGION = "us-east-1"
GROUP = "orders"


def _snapshot(name: str, status: str, nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    snap: dict[str, Any] = {"SnapshotName": name, "ReplicationGroupId": GROUP, "SnapshotStatus": status,
                            "SnapshotSource": "manual", "Engine": "valkey", "EngineVersion": "8.0.1",
                            "CacheNodeType": "cache.r7g.large", "NumNodeGroups": 3,
                            "ARN": f"arn:aws:elasticache:{REGION}:123456789012:snapshot:{name}"}
    if nodes is not None:
        snap["NodeSnapshots"] = nodes
    return snap


@pytest.fixture
def stubbed(s3_env: str) -> tuple[Any, Stubber]:
    client = boto3.client("elasticache", region_name=REGION)
    return client, Stubber(client)


def _bucket() -> str:
    name = f"stub-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _stub_backup(client: Any, stub: Stubber, tmp_path: Path, export: str) -> tuple[SlotLayout, Any, dict[str, str]]:
    """The whole call sequence of a backup of a 3-shard group; CopySnapshot writes the shard files
    into ``export`` as ElastiCache does. Returns the layout, the split shards and CopySnapshot's parameters."""
    layout = SlotLayout.even(3)
    shards = split([str(FIXTURES / "valkey-8.1.rdb")], tmp_path / "shards", layout, db_map={1: 0, 5: 0},
                   on_duplicate="first")
    seen: dict[str, str] = {}

    def export_files(params: dict[str, Any], **_: Any) -> None:
        """What ElastiCache itself does during CopySnapshot: one object per node group."""
        seen.update(params)
        for i, shard in enumerate(shards.shards, 1):
            boto3.client("s3").put_object(Bucket=params["TargetBucket"], Key=f"{params['TargetSnapshotName']}-{i:04d}.rdb",
                                          Body=(tmp_path / "shards" / shard.file).read_bytes())

    client.meta.events.register("provide-client-params.elasticache.CopySnapshot", export_files)
    nodes = [{"CacheClusterId": f"{GROUP}-{i:04d}-001", "NodeGroupId": f"{i:04d}", "CacheNodeId": "0001",
              "CacheSize": "1 MB", "NodeGroupConfiguration": {"NodeGroupId": f"{i:04d}",
                                                              "Slots": f"{s.ranges[0][0]}-{s.ranges[0][1]}"}}
             for i, s in enumerate(layout.shards, 1)]
    nodes.reverse()  # files are matched to node groups by number, not by position
    name = ANY
    stub.add_response("describe_replication_groups",
                      {"ReplicationGroups": [{"ReplicationGroupId": GROUP, "Status": "available", "ClusterEnabled": True,
                                              "Engine": "valkey", "DataTiering": "disabled"}]},
                      {"ReplicationGroupId": GROUP})
    stub.add_response("create_snapshot", {"Snapshot": _snapshot("x", "creating")},
                      {"ReplicationGroupId": GROUP, "SnapshotName": name})
    describe = {"SnapshotName": name, "ShowNodeGroupConfig": True}
    stub.add_response("describe_snapshots", {"Snapshots": [_snapshot("x", "creating")]}, describe)
    stub.add_response("describe_snapshots", {"Snapshots": [_snapshot("x", "available")]}, describe)
    stub.add_response("copy_snapshot", {"Snapshot": _snapshot("x", "exporting")},
                      {"SourceSnapshotName": name, "TargetSnapshotName": name, "TargetBucket": export})
    stub.add_response("describe_snapshots", {"Snapshots": [_snapshot("x", "exporting")]}, describe)
    stub.add_response("describe_snapshots", {"Snapshots": [_snapshot("x", "available", nodes)]}, describe)
    stub.add_response("delete_snapshot", {"Snapshot": _snapshot("x", "deleting")}, {"SnapshotName": name})
    return layout, shards, seen


def test_the_backup_call_sequence_matches_the_service_model(stubbed, tmp_path: Path) -> None:
    client, stub = stubbed
    export, home = _bucket(), _bucket()
    layout, shards, seen = _stub_backup(client, stub, tmp_path, export)
    repo = Repository.open(f"s3://{home}/r")
    secret = b"elasticache backup passphrase"
    options = ElastiCacheBackupOptions(export_bucket=export, grant=True, api=Boto3ElastiCache(client),
                                       poll_seconds=0, sleep=lambda s: None,
                                       encryption=EncryptionOptions("passphrase", passphrase=secret))
    with stub:
        manifest = elasticache_backup(f"elasticache://{GROUP}?region={REGION}", repo, options)
        stub.assert_no_pending_responses()
    assert re.fullmatch(r"snaptool-\d{8}t\d{6}z-elasticache-orders-[0-9a-f]{6}", seen["SourceSnapshotName"])
    assert seen["TargetSnapshotName"] == seen["SourceSnapshotName"]
    assert [f.slots for f in manifest.files] == [[list(s.ranges[0])] for s in layout.shards]
    assert [f.sha256 for f in manifest.files] == [s.sha256 for s in shards.shards]
    assert manifest.source["engine"] == "valkey-8.0.1" and manifest.files[0].node == "elasticache://orders/0001"
    assert Catalog(repo).resolve("latest").id == manifest.id
    assert manifest.encryption and all(f.name.endswith(".rdb.age") and f.stored_sha256 for f in manifest.files)
    result = drill(manifest.id, repo, keys=DecryptionKeys(passphrase=secret))  # a local 3-node cluster
    assert result.ok, [c for c in result.checks if not c.ok]


def test_the_export_bucket_gets_none_of_the_repository_bucket_settings(stubbed, s3_env: str, tmp_path: Path) -> None:
    """The repository's settings (here another account's bucket, SSE-KMS) name its own bucket: the
    export bucket is read and cleaned with the same credentials only."""
    client, stub = stubbed
    export, home = _bucket(), _bucket()
    _stub_backup(client, stub, tmp_path, export)
    proxy = FaultProxy(s3_env)
    try:
        settings = S3Settings(endpoint_url=proxy.url, expected_bucket_owner="123456789012", sse="aws:kms")
        repo = Repository.open(f"s3://{home}/r", s3=settings)
        options = ElastiCacheBackupOptions(export_bucket=export, grant=True, api=Boto3ElastiCache(client),
                                           poll_seconds=0, sleep=lambda s: None, aws=settings)
        with stub:
            manifest = elasticache_backup(f"elasticache://{GROUP}?region={REGION}", repo, options)
        assert Catalog(repo).resolve("latest").id == manifest.id
    finally:
        proxy.close()
    to_export = [s for s in proxy.traffic.seen if s.path.startswith(f"/{export}")]
    to_home = [s for s in proxy.traffic.seen if s.path.startswith(f"/{home}") and s.method == "PUT"]
    assert {s.method for s in to_export} >= {"GET", "POST"}  # read, then the exported objects deleted
    assert not [s for s in to_export if "x-amz-expected-bucket-owner" in s.headers or
                "x-amz-server-side-encryption" in s.headers]
    assert to_home and all(s.headers["x-amz-expected-bucket-owner"] == "123456789012" for s in to_home)


CLUSTER = "cache-one"


def _cluster_snapshot(status: str, nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A snapshot of the single cache cluster CLUSTER (no replication group)."""
    snap = {**_snapshot("x", status, nodes), "CacheClusterId": CLUSTER, "NumNodeGroups": 1}
    del snap["ReplicationGroupId"]
    return snap


def _no_group(stub: Stubber, name: str) -> None:
    stub.add_client_error("describe_replication_groups", "ReplicationGroupNotFoundFault",
                          f"ReplicationGroup {name} not found.", 404, expected_params={"ReplicationGroupId": name})


def test_a_single_cache_cluster_is_backed_up_by_its_cluster_id(stubbed, tmp_path: Path) -> None:
    """Not a replication group: the snapshot is asked for with CacheClusterId, and its one file
    ``<name>-0001.rdb`` becomes a snapshot without slots."""
    client, stub = stubbed
    export = _bucket()
    source = FIXTURES / "valkey-8.1.rdb"

    def export_file(params: dict[str, Any], **_: Any) -> None:
        boto3.client("s3").put_object(Bucket=params["TargetBucket"], Key=f"{params['TargetSnapshotName']}-0001.rdb",
                                      Body=source.read_bytes())

    client.meta.events.register("provide-client-params.elasticache.CopySnapshot", export_file)
    _no_group(stub, CLUSTER)
    stub.add_response("describe_cache_clusters", {"CacheClusters": [
        {"CacheClusterId": CLUSTER, "Engine": "valkey", "EngineVersion": "8.0.1", "CacheClusterStatus": "available",
         "CacheNodeType": "cache.t4g.small", "NumCacheNodes": 1}]},
        {"CacheClusterId": CLUSTER, "ShowCacheNodeInfo": True})
    stub.add_response("create_snapshot", {"Snapshot": _cluster_snapshot("creating")},
                      {"CacheClusterId": CLUSTER, "SnapshotName": ANY})
    describe = {"SnapshotName": ANY, "ShowNodeGroupConfig": True}
    stub.add_response("describe_snapshots", {"Snapshots": [_cluster_snapshot("available")]}, describe)
    stub.add_response("copy_snapshot", {"Snapshot": _cluster_snapshot("exporting")},
                      {"SourceSnapshotName": ANY, "TargetSnapshotName": ANY, "TargetBucket": export})
    node = {"CacheClusterId": CLUSTER, "NodeGroupId": "0001", "CacheNodeId": "0001", "CacheSize": "1 MB"}
    stub.add_response("describe_snapshots", {"Snapshots": [_cluster_snapshot("available", [node])]}, describe)
    stub.add_response("delete_snapshot", {"Snapshot": _cluster_snapshot("deleting")}, {"SnapshotName": ANY})
    repo = Repository.open(str(tmp_path / "repo"))
    options = ElastiCacheBackupOptions(export_bucket=export, grant=True, api=Boto3ElastiCache(client),
                                       poll_seconds=0, sleep=lambda s: None)
    with stub:
        manifest = elasticache_backup(f"elasticache://{CLUSTER}?region={REGION}", repo, options)
        stub.assert_no_pending_responses()
    (entry,) = manifest.files
    assert entry.sha256 == hashlib.sha256(source.read_bytes()).hexdigest() and entry.slots is None
    assert entry.node == f"elasticache://{CLUSTER}/0001" and entry.node_id == CLUSTER
    assert "layout" not in manifest.source and manifest.source["engine"] == "valkey-8.0.1"
    assert boto3.client("s3").list_objects_v2(Bucket=export).get("KeyCount") == 0
    result = drill(manifest.id, repo)
    assert result.ok, [c for c in result.checks if not c.ok]


@pytest.mark.parametrize("cluster, refusal", [
    ({"Engine": "memcached", "EngineVersion": "1.6.22"},
     "runs Memcached: ElastiCache exports only Valkey and Redis OSS"),
    ({"Engine": "redis", "ReplicationGroupId": GROUP},
     f"belongs to replication group {GROUP}: back up elasticache://{GROUP}?region={REGION}"),
])
def test_sources_that_cannot_be_exported_are_refused_first(stubbed, tmp_path: Path, cluster: dict[str, str],
                                                           refusal: str) -> None:
    """Refused from the descriptions alone: no snapshot is created, the bucket is not touched."""
    client, stub = stubbed
    _no_group(stub, CLUSTER)
    stub.add_response("describe_cache_clusters", {"CacheClusters": [{"CacheClusterId": CLUSTER, **cluster}]},
                      {"CacheClusterId": CLUSTER, "ShowCacheNodeInfo": True})
    repo = Repository.open(str(tmp_path / "repo"))
    options = ElastiCacheBackupOptions(export_bucket="no-such-bucket", api=Boto3ElastiCache(client),
                                       poll_seconds=0, sleep=lambda s: None)
    with stub, pytest.raises(ElastiCacheError) as info:
        elasticache_backup(f"elasticache://{CLUSTER}?region={REGION}", repo, options)
    stub.assert_no_pending_responses()  # and nothing after: the next call would fail the stub
    assert str(info.value) == f"{CLUSTER} {refusal}"
    assert Catalog(repo).list() == []


def test_a_refused_export_still_deletes_the_snapshot(stubbed, tmp_path: Path) -> None:
    client, stub = stubbed
    export = _bucket()
    stub.add_response("describe_replication_groups",
                      {"ReplicationGroups": [{"ReplicationGroupId": GROUP, "Engine": "redis"}]}, {"ReplicationGroupId": GROUP})
    stub.add_response("create_snapshot", {"Snapshot": _snapshot("x", "creating")},
                      {"ReplicationGroupId": GROUP, "SnapshotName": ANY})
    stub.add_response("describe_snapshots", {"Snapshots": [_snapshot("x", "available")]},
                      {"SnapshotName": ANY, "ShowNodeGroupConfig": True})
    stub.add_client_error("copy_snapshot", "InvalidParameterValueException",
                          f"The S3 bucket {export} is outside of the region.", 400)
    stub.add_response("delete_snapshot", {"Snapshot": _snapshot("x", "deleting")}, {"SnapshotName": ANY})
    repo = Repository.open(str(tmp_path / "repo"))
    options = ElastiCacheBackupOptions(export_bucket=export, grant=True, api=Boto3ElastiCache(client),
                                       poll_seconds=0, sleep=lambda s: None)
    with stub, pytest.raises(ElastiCacheError, match=r"^ElastiCache CopySnapshot in us-east-1: "
                                                     r"InvalidParameterValueException: The S3 bucket .* outside"):
        elasticache_backup(f"elasticache://{GROUP}?region={REGION}", repo, options)
    stub.assert_no_pending_responses()
    assert Catalog(repo).list() == []


def test_seed_plans_are_valid_create_replication_group_requests(stubbed) -> None:
    client, stub = stubbed
    sharded = SeedPlan("20261126T071502Z-x-3fa9c1", "seeds", REGION, 11, "valkey-8.0", objects=[
        SeedObject(f"dr/s{i}.rdb", f"arn:aws:s3:::seeds/dr/s{i}.rdb", 10, "0" * 64, f"{i:04d}", slots)
        for i, slots in enumerate(["0-5460", "5461-10922", "10923-16383"], 1)])
    standalone = SeedPlan("20261126T071502Z-x-3fa9c1", "seeds", REGION, 9, None, objects=[
        SeedObject("dump.rdb", "arn:aws:s3:::seeds/dump.rdb", 10, "0" * 64)])
    for plan in (sharded, standalone):
        request = plan.create_replication_group_request("orders-dr", "cache.r7g.large", replicas=2)
        stub.add_response("create_replication_group", {"ReplicationGroup": {"ReplicationGroupId": "orders-dr",
                                                                            "Status": "creating"}}, request)
        with stub:
            client.create_replication_group(**request)  # the model validates every parameter
        stub.assert_no_pending_responses()
    request = sharded.create_replication_group_request("orders-dr", "cache.r7g.large", replicas=2)
    assert request["NodeGroupConfiguration"][1] == {"NodeGroupId": "0002", "Slots": "5461-10922", "ReplicaCount": 2}
    assert request["Engine"] == "valkey" and request["EngineVersion"] == "8.0" and request["NumNodeGroups"] == 3
