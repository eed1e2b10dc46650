"""Who is who in a live cluster: shards, their primary and replicas, and whether each is healthy.

Read from ``CLUSTER NODES``, which every engine version answers the same way and which, unlike
CLUSTER SLOTS, says which replicas are failing or disconnected. Slot migrations show only in the
lines a node writes about itself, so every primary is asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import redis

from ..errors import EngineError, SnaptoolError
from ..rdb.slots import SLOTS, compress, format_ranges
from .address import NodeAddress

_MIGRATING = re.compile(r"^\[(\d+)-([<>])-([0-9a-fA-F]+)\]$")
_BAD_FLAGS = {"fail", "fail?", "handshake", "noaddr", "nofailover"}


@dataclass
class ClusterNode:
    node_id: str
    host: str
    port: int
    primary: bool
    primary_id: str | None
    healthy: bool  # connected and not flagged failing
    ranges: list[tuple[int, int]] = field(default_factory=list)
    migrating: list[int] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class ClusterShard:
    primary: ClusterNode
    replicas: list[ClusterNode]

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return self.primary.ranges


def require_settled(where: str, owned: list[tuple[int, int]], migrating: set[int], advice: str) -> None:
    """Refuse a cluster whose slots are not all owned or are moving: its shards would not hold
    each key exactly once."""
    covered = bytearray(SLOTS)
    for start, end in owned:
        covered[start:end + 1] = b"\1" * (end - start + 1)
    problems = []
    unassigned = compress(i for i in range(SLOTS) if not covered[i])
    if unassigned:
        problems.append(_phrase(unassigned, "assigned to no node"))
    if migrating:
        problems.append(_phrase(compress(migrating), "being migrated between nodes"))
    if problems:
        raise SnaptoolError(f"cluster at {where}: {'; '.join(problems)}; {advice}")


def _phrase(ranges: list[tuple[int, int]], what: str) -> str:
    single = len(ranges) == 1 and ranges[0][0] == ranges[0][1]
    return f"slot {ranges[0][0]} is {what}" if single else f"slots {format_ranges(ranges)} are {what}"


def is_cluster(address: NodeAddress) -> bool:
    """True when the node runs in cluster mode (INFO cluster: cluster_enabled:1)."""
    client = address.client()
    try:
        return str(client.info("cluster").get("cluster_enabled", 0)) == "1"
    except redis.AuthenticationError as exc:
        raise EngineError(f"authentication to {address} failed: {exc}") from None
    except redis.ResponseError as exc:
        raise EngineError(f"{address} refused INFO: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise EngineError(f"cannot reach {address}: {exc}") from None
    finally:
        client.close()


def parse_nodes(text: str, default_host: str) -> list[ClusterNode]:
    """The nodes of a CLUSTER NODES reply."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split(",")[0].split("@")[0]
        host, _, port = address.rpartition(":")
        flags = set(fields[2].split(","))
        node = ClusterNode(fields[0], host or default_host, int(port or 0), "master" in flags,
                           None if fields[3] == "-" else fields[3],
                           fields[7] == "connected" and not flags & _BAD_FLAGS or "myself" in flags)
        for spec in fields[8:]:
            if (match := _MIGRATING.match(spec)):
                node.migrating.append(int(match.group(1)))
            elif "-" in spec:
                start, end = spec.split("-")
                node.ranges.append((int(start), int(end)))
            elif spec.isdigit():
                node.ranges.append((int(spec), int(spec)))
        nodes.append(node)
    return nodes


def _cluster_nodes(address: NodeAddress) -> list[ClusterNode]:
    client = address.client()
    try:
        reply = client.execute_command("CLUSTER", "NODES")
    except redis.RedisError as exc:
        raise EngineError(f"{address} did not answer CLUSTER NODES: {exc}") from None
    finally:
        client.close()
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return parse_nodes(text, address.host)


def read_topology(address: NodeAddress) -> list[ClusterShard]:
    """The shards of the cluster ``address`` belongs to, ordered by first slot.

    Refuses (SnaptoolError) a cluster with unassigned slots or slots being migrated: a backup
    taken then would not hold each key exactly once.
    """
    nodes = _cluster_nodes(address)
    primaries = [n for n in nodes if n.primary and n.ranges]
    migrating: set[int] = set()
    for primary in primaries:  # each node reports only its own migrations
        if not primary.healthy:
            continue
        for node in _cluster_nodes(address.with_endpoint(primary.host, primary.port)):
            migrating.update(node.migrating)
    require_settled(str(address), [r for p in primaries for r in p.ranges], migrating,
                    "wait until the resharding has finished")
    shards = [ClusterShard(p, [n for n in nodes if n.primary_id == p.node_id]) for p in primaries]
    return sorted(shards, key=lambda s: s.ranges[0])
