"""Live clusters: read a cluster's slot layout, and start a local cluster on shard files.

A :class:`LocalCluster` starts one engine node per shard file in cluster mode on free loopback
ports, lets each load its file, assigns every slot as the layout says, introduces the nodes to
each other and waits until all of them agree and report ``cluster_state:ok``.
"""

from __future__ import annotations

import os
import time
from typing import Sequence
from urllib.parse import urlparse

import redis
from redis.cluster import ClusterNode, RedisCluster

from ..errors import EngineError, SnaptoolError
from ..rdb.slots import SLOTS, Shard, SlotLayout
from .discovery import Engine
from .server import EngineServer

_ADDSLOTS_BATCH = 2000


def _connect(url: str) -> redis.Redis:
    parsed = urlparse(url if "://" in url else f"redis://{url}")
    if parsed.hostname is None or parsed.port is None:
        raise SnaptoolError(f"{url!r} is not a node URL (redis://host:port)")
    return redis.Redis(host=parsed.hostname, port=parsed.port, username=parsed.username,
                       password=parsed.password, ssl=parsed.scheme == "rediss", socket_timeout=10)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_layout(url: str) -> SlotLayout:
    """The slot layout of a live cluster (CLUSTER SHARDS, or CLUSTER SLOTS on Redis 6)."""
    client = _connect(url)
    try:
        try:
            info = _text(client.execute_command("CLUSTER", "INFO"))
        except redis.ResponseError as exc:
            raise EngineError(f"{url}: not a cluster node ({exc})") from None
        except redis.RedisError as exc:
            raise EngineError(f"{url}: cannot connect ({exc})") from None
        if "cluster_slots_assigned:16384" not in info:
            raise SnaptoolError(f"{url}: not every slot of the cluster is assigned")
        nodes_text = _text(client.execute_command("CLUSTER", "NODES"))
    finally:
        client.close()
    if "->-" in nodes_text or "-<-" in nodes_text:
        raise SnaptoolError(f"{url}: slots are migrating; read the layout once the migration is done")
    return SlotLayout.from_nodes_text(nodes_text)


class LocalCluster:
    """One engine node per shard, in cluster mode on free loopback ports, slots as the layout says."""

    def __init__(self, engine: Engine, layout: SlotLayout, files: Sequence[str | os.PathLike | None], *,
                 config: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        if len(files) != len(layout.shards):
            raise SnaptoolError(f"{len(files)} files for {len(layout.shards)} shards")
        self.engine = engine
        self.layout = layout
        self.files = list(files)
        self.config = config or {}
        self.timeout = timeout
        self.nodes: list[EngineServer] = []

    def start(self) -> "LocalCluster":
        try:
            for file in self.files:
                node = EngineServer(self.engine, cluster=True, assign_slots=False,
                                    rdb=None if file is None else str(file), config=self.config)
                self.nodes.append(node)
                node.start()
            for node, shard in zip(self.nodes, self.layout.shards):
                self._assign(node, shard)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.client().execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _assign(self, node: EngineServer, shard: Shard) -> None:
        """ADDSLOTS what the node does not own yet; a node may claim slots of keys it loaded."""
        client = node.client()
        owned = _owned_slots(client)
        wanted = {s for a, b in shard.ranges for s in range(a, b + 1)}
        foreign = sorted(owned - wanted)
        if foreign:
            raise EngineError(f"{shard.name}: its file holds keys of slot {foreign[0]}, which the layout "
                              f"gives another shard")
        missing = sorted(wanted - owned)
        for i in range(0, len(missing), _ADDSLOTS_BATCH):
            client.execute_command("CLUSTER", "ADDSLOTS", *missing[i:i + _ADDSLOTS_BATCH])

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.timeout
        expected = [_merged(list(shard.ranges)) for shard in self.layout.shards]
        while True:
            states = [_text(n.client().execute_command("CLUSTER", "INFO")) for n in self.nodes]
            if all("cluster_state:ok" in s and "cluster_known_nodes:%d" % len(self.nodes) in s for s in states):
                views = [_slot_view(n.client(), self.nodes) for n in self.nodes]
                if all(view == expected for view in views):
                    return
            if time.monotonic() > deadline:
                tails = "; ".join(f"node {i}: {' | '.join(n.log_tail(3))}" for i, n in enumerate(self.nodes))
                raise EngineError(f"the local cluster did not reach cluster_state:ok in {self.timeout:.0f} s ({tails})")
            time.sleep(0.1)

    def client(self) -> RedisCluster:
        """A cluster-aware client (routing by slot, following MOVED/ASK)."""
        first = self.nodes[0]
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", first.port)], socket_timeout=30)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _owned_slots(client: redis.Redis) -> set[int]:
    """Slots the node itself serves, from its CLUSTER NODES 'myself' line."""
    for line in _text(client.execute_command("CLUSTER", "NODES")).splitlines():
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2]:
            owned: set[int] = set()
            for item in fields[8:]:
                if item.startswith("["):
                    continue
                start, _, end = item.partition("-")
                owned.update(range(int(start), int(end or start) + 1))
            return owned
    return set()


def _slot_view(client: redis.Redis, nodes: list[EngineServer]) -> list[list[tuple[int, int]]]:
    """Per node (in our order), the slot ranges this client's node believes it serves."""
    by_port = {node.port: i for i, node in enumerate(nodes)}
    view: list[list[tuple[int, int]]] = [[] for _ in nodes]
    for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
        index = by_port.get(int(primary[1]))
        if index is None:
            return []
        view[index].append((int(start), int(end)))
    return [_merged(ranges) for ranges in view]


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with adjacent ones joined, so two descriptions of the same slots compare equal."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] + 1 == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


__all__ = ["LocalCluster", "SLOTS", "read_layout"]
