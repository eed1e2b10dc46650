"""The ElastiCache calls snaptool makes, behind one small interface.

:class:`ElastiCacheApi` is what the jobs use; :class:`Boto3ElastiCache` implements it over a boto3
client. Keeping the surface this small lets tests run the jobs against botocore's Stubber (the
real service model checks every request) or against a fake that writes real RDB files, since
moto implements neither CopySnapshot nor seeding.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..errors import SnaptoolError
from ..storage.s3 import S3Settings, describe_error, error_code, is_boto_error

#: Statuses a snapshot passes through while ElastiCache works on it; anything but "available" is busy.
BUSY = ("creating", "copying", "exporting", "restoring", "deleting")
_NOT_FOUND = ("SnapshotNotFoundFault", "ReplicationGroupNotFoundFault", "CacheClusterNotFound",
              "CacheClusterNotFoundFault")


class ElastiCacheError(SnaptoolError):
    """An ElastiCache call failed, or a snapshot did not reach the state asked for."""


class ElastiCacheApi(Protocol):
    """The ElastiCache operations the jobs need (shapes as in the AWS API)."""

    region: str

    def create_snapshot(self, name: str, *, replication_group: str | None = None,
                        cache_cluster: str | None = None) -> dict[str, Any]: ...

    def describe_snapshot(self, name: str) -> dict[str, Any] | None: ...

    def copy_snapshot(self, source_name: str, target_name: str, bucket: str) -> dict[str, Any]: ...

    def delete_snapshot(self, name: str) -> dict[str, Any]: ...

    def describe_replication_group(self, group_id: str) -> dict[str, Any] | None: ...

    def describe_cache_cluster(self, cluster_id: str) -> dict[str, Any] | None: ...


class Boto3ElastiCache:
    """:class:`ElastiCacheApi` over a boto3 ``elasticache`` client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.region = str(client.meta.region_name)

    @classmethod
    def connect(cls, region: str, settings: S3Settings | None = None) -> Boto3ElastiCache:
        """A client for ``region`` with the credentials (profile, keys) of ``settings``."""
        return cls((settings or S3Settings()).replace(region=region).client("elasticache"))

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types
            if is_boto_error(exc):
                name = "".join(p.title() for p in operation.split("_"))
                raise ElastiCacheError(f"ElastiCache {name} in {self.region}: {describe_error(exc)}") from None
            raise

    def _maybe(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in _NOT_FOUND:
                return None
            if is_boto_error(exc):
                name = "".join(p.title() for p in operation.split("_"))
                raise ElastiCacheError(f"ElastiCache {name} in {self.region}: {describe_error(exc)}") from None
            raise

    def create_snapshot(self, name: str, *, replication_group: str | None = None,
                        cache_cluster: str | None = None) -> dict[str, Any]:
        source = {"ReplicationGroupId": replication_group} if replication_group else {"CacheClusterId": cache_cluster}
        return self._call("create_snapshot", SnapshotName=name, **source)["Snapshot"]

    def describe_snapshot(self, name: str) -> dict[str, Any] | None:
        answer = self._maybe("describe_snapshots", SnapshotName=name, ShowNodeGroupConfig=True)
        snapshots = (answer or {}).get("Snapshots") or []
        return snapshots[0] if snapshots else None

    def copy_snapshot(self, source_name: str, target_name: str, bucket: str) -> dict[str, Any]:
        return self._call("copy_snapshot", SourceSnapshotName=source_name, TargetSnapshotName=target_name,
                          TargetBucket=bucket)["Snapshot"]

    def delete_snapshot(self, name: str) -> dict[str, Any]:
        return self._call("delete_snapshot", SnapshotName=name)["Snapshot"]

    def describe_replication_group(self, group_id: str) -> dict[str, Any] | None:
        answer = self._maybe("describe_replication_groups", ReplicationGroupId=group_id)
        groups = (answer or {}).get("ReplicationGroups") or []
        return groups[0] if groups else None

    def describe_cache_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        answer = self._maybe("describe_cache_clusters", CacheClusterId=cluster_id, ShowCacheNodeInfo=True)
        clusters = (answer or {}).get("CacheClusters") or []
        return clusters[0] if clusters else None


# --------------------------------------------------------------------------- helpers

@dataclass(frozen=True)
class ElastiCacheSource:
    """``elasticache://<replication-group-or-cluster>?region=R``."""

    id: str
    region: str | None

    @property
    def url(self) -> str:
        return f"elasticache://{self.id}" + (f"?region={self.region}" if self.region else "")


def parse_elasticache_url(url: str) -> ElastiCacheSource:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "elasticache" or not parsed.netloc:
        raise ElastiCacheError(f"{url!r}: use elasticache://<replication-group-or-cluster-id>?region=R")
    query = urllib.parse.parse_qs(parsed.query)
    unknown = sorted(set(query) - {"region"})
    if unknown:
        raise ElastiCacheError(f"{url!r}: unknown parameter {unknown[0]!r} (only region=)")
    name = parsed.netloc.lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,49}", name):
        raise ElastiCacheError(f"{url!r}: {name!r} is not a replication group or cluster id")
    return ElastiCacheSource(name, (query.get("region") or [None])[0])


def parse_slots(text: str) -> list[list[int]]:
    """``"0-5460"`` or ``"0-100,200,300-400"`` → [[0, 5460]] …"""
    ranges = []
    for item in filter(None, (p.strip() for p in str(text).split(","))):
        start, _, end = item.partition("-")
        try:
            ranges.append([int(start), int(end or start)])
        except ValueError:
            raise ElastiCacheError(f"slot range {text!r} is not like 0-5460") from None
    return ranges


def format_slots(ranges: list[list[int]] | list[tuple[int, int]]) -> str:
    """The ``startkey-endkey`` form of NodeGroupConfiguration.Slots (one range)."""
    return ",".join(f"{a}-{b}" for a, b in ranges)


def s3_object_arn(bucket: str, key: str, region: str | None = None) -> str:
    partition = "aws-cn" if (region or "").startswith("cn-") else \
        "aws-us-gov" if (region or "").startswith("us-gov-") else "aws"
    return f"arn:{partition}:s3:::{bucket}/{key}"


def wait_for_snapshot(api: ElastiCacheApi, name: str, *, poll_seconds: float, timeout: float,
                      sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                      on_status: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Poll DescribeSnapshots until the snapshot is ``available`` (there is no waiter for snapshots)."""
    deadline = clock() + timeout
    last = None
    while True:
        snapshot = api.describe_snapshot(name)
        if snapshot is None:
            raise ElastiCacheError(f"ElastiCache snapshot {name} in {api.region} disappeared"
                                   + (f" while {last}" if last else ""))
        status = str(snapshot.get("SnapshotStatus", "")).lower()
        if status != last and on_status is not None:
            on_status(status)
        last = status
        if status == "available":
            return snapshot
        if status not in BUSY:
            raise ElastiCacheError(f"ElastiCache snapshot {name} in {api.region} is {status or 'in no known state'}")
        if clock() > deadline:
            raise ElastiCacheError(f"ElastiCache snapshot {name} in {api.region} still {status} after "
                                   f"{timeout:.0f}s")
        sleep(poll_seconds)
