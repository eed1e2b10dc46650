"""Live clusters: read the slot layout of a running one, or build a throwaway one from shard files.

:func:`read_layout` asks a node of a real cluster who owns which slot (CLUSTER SHARDS on Redis 7+
and Valkey, CLUSTER SLOTS on 6.x), so a snapshot can be split the way that cluster is sharded.

:class:`LocalCluster` starts one engine node per shard file in cluster mode on loopback ports,
assigns the slots the layout gives each shard and joins the nodes into one cluster, e.g. to
check that split files load and serve every key from the right node::

    with LocalCluster(find_engine("redis-7.0"), SlotLayout.even(3), files) as cluster:
        cluster.client().get("user:1")
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Sequence

import redis
from redis.cluster import RedisCluster

from ..errors import EngineError, SnaptoolError
from ..rdb.slots import Shard, SlotLayout, compress, format_ranges, short_names
from .address import NodeAddress
from .discovery import Engine
from .resp import reply_text
from .topology import require_settled
from .server import DEFAULT_START_TIMEOUT, EngineServer, EngineStartError

log = logging.getLogger(__name__)

_ADDSLOTS_BATCH = 4096  # slots per CLUSTER ADDSLOTS on engines without ADDSLOTSRANGE
_RANGES_BATCH = 1000  # ranges per CLUSTER ADDSLOTSRANGE
_POLL = 0.05
_TAIL_LINES = 6
_MARKER = re.compile(r"^\[(\d+)-([<>])-([0-9a-fA-F]+)\]$")

Range = tuple[int, int]


# --------------------------------------------------------------------------- helpers

def _as_dict(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat [key, value, ...] list as a dict with str keys."""
    if isinstance(value, dict):
        return {reply_text(k): v for k, v in value.items()}
    items = list(value)
    return {reply_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _merge(entries: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Sorted (start, end, owner) with adjacent runs of the same owner joined."""
    out: list[tuple[int, int, str]] = []
    for start, end, owner in sorted(entries):
        if out and out[-1][2] == owner and out[-1][1] + 1 == start:
            out[-1] = (out[-1][0], end, owner)
        else:
            out.append((start, end, owner))
    return out


def _cluster_slots(client: redis.Redis) -> list[tuple[int, int, str]]:
    """CLUSTER SLOTS as merged (start, end, primary node id)."""
    entries = []
    for entry in client.execute_command("CLUSTER", "SLOTS"):
        primary = entry[2]
        owner = reply_text(primary[2]) if len(primary) > 2 else f"{reply_text(primary[0])}:{primary[1]}"
        entries.append((int(entry[0]), int(entry[1]), owner))
    return _merge(entries)


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    text = reply_text(client.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# --------------------------------------------------------------------------- read_layout

def _primaries_from_shards(reply: Any) -> list[tuple[str, list[Range], str, int]]:
    """(node id, ranges, ip, port) of each shard's primary from CLUSTER SHARDS."""
    out = []
    for raw in reply:
        shard = _as_dict(raw)
        flat = [int(x) for x in shard.get("slots", [])]
        ranges = [(flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]
        nodes = [_as_dict(n) for n in shard.get("nodes", [])]
        if not ranges or not nodes:
            continue
        primary = next((n for n in nodes if reply_text(n.get("role", "")) in ("master", "primary")), nodes[0])
        out.append((reply_text(primary["id"]), ranges, reply_text(primary.get("ip", "")), int(primary.get("port", 0) or 0)))
    return out


def _primaries_from_slots(reply: Any) -> list[tuple[str, list[Range], str, int]]:
    """The same from CLUSTER SLOTS (Redis 6.x): ranges grouped by primary."""
    by_id: dict[str, tuple[list[Range], str, int]] = {}
    for entry in reply:
        primary = entry[2]
        ip, port = reply_text(primary[0]), int(primary[1])
        node_id = reply_text(primary[2]) if len(primary) > 2 else f"{ip}-{port}"
        by_id.setdefault(node_id, ([], ip, port))[0].append((int(entry[0]), int(entry[1])))
    return [(node_id, ranges, ip, port) for node_id, (ranges, ip, port) in by_id.items()]


def _migrations(client: redis.Redis) -> list[int]:
    """Slots this node is migrating or importing (its own line of CLUSTER NODES)."""
    text = reply_text(client.execute_command("CLUSTER", "NODES"))
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2].split(","):
            return [int(m.group(1)) for f in fields[8:] if (m := _MARKER.match(f))]
    return []


def read_layout(address: NodeAddress | str) -> SlotLayout:
    """The slot layout of the live cluster that the node at ``address`` belongs to.

    Shards are named after their primary's node id (first 8 characters) and ordered by first
    slot. Refuses (SnaptoolError) a cluster with unassigned or migrating slots: a snapshot split
    by such a layout would not match where the keys live. EngineError when the node cannot be
    reached or is not in cluster mode.
    """
    if isinstance(address, str):
        address = NodeAddress.parse(address)
    where = address.redacted()
    client = address.client()
    try:
        try:
            try:
                primaries = _primaries_from_shards(client.execute_command("CLUSTER", "SHARDS"))
            except redis.ResponseError as exc:
                if "disabled" in str(exc):
                    raise
                # Redis < 7.0: "Unknown subcommand ... 'SHARDS'"
                primaries = _primaries_from_slots(client.execute_command("CLUSTER", "SLOTS"))
            migrating = set(_migrations(client))
        except redis.ResponseError as exc:
            if "cluster support disabled" in str(exc):
                raise EngineError(f"{where} is not a cluster node (cluster support disabled)") from None
            raise EngineError(f"{where} refused to report its cluster slots: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise EngineError(f"cannot reach cluster node {where}: {exc}") from None
    finally:
        client.close()

    for node_id, _, ip, port in primaries:  # migration markers only show on the nodes involved
        if not port:
            continue
        other = address.with_endpoint(ip, port).client()
        try:
            migrating.update(_migrations(other))
        except (redis.RedisError, OSError) as exc:
            log.warning("could not check %s:%s (%s) for migrating slots: %s", ip or address.host, port,
                        node_id[:8], exc)
        finally:
            other.close()

    require_settled(where, [r for _, ranges, _, _ in primaries for r in ranges], migrating,
                    "fix or finish the resharding before using its layout")
    names = short_names([node_id for node_id, _, _, _ in primaries])
    shards = [Shard(name, tuple(ranges)) for name, (_, ranges, _, _) in zip(names, primaries)]
    return SlotLayout(tuple(sorted(shards, key=lambda s: s.ranges[0])))


class LocalCluster:
    """One engine node per shard file, in cluster mode on free loopback ports, slots assigned as the layout says."""

    def __init__(self, engine: Engine, layout: SlotLayout, files: Sequence[str | os.PathLike | None], *,
                 config: dict[str, str] | None = None, timeout: float = 60.0, replicas: int = 0) -> None:
        layout.validate()
        self.files = list(files)
        if len(self.files) != len(layout.shards):
            raise SnaptoolError(f"{len(layout.shards)} shards need {len(layout.shards)} files (or None), "
                                f"got {len(self.files)}")
        self.engine = engine
        self.layout = layout
        self.config = dict(config or {})
        self.timeout = timeout
        self.node_ids: list[str] = []
        self.nodes: list[EngineServer] = self._make_nodes()
        self.replicas = replicas
        #: replica_nodes[i] are the replicas of nodes[i] (``replicas`` each, in sync once started)
        self.replica_nodes: list[list[EngineServer]] = []

    def _make_nodes(self) -> list[EngineServer]:
        # loading a big shard file may take longer than forming the cluster: never less than the default
        start_timeout = max(self.timeout, DEFAULT_START_TIMEOUT)
        return [EngineServer(self.engine, config=self.config, cluster=True, assign_slots=False, rdb=f,
                             start_timeout=start_timeout) for f in self.files]

    def __repr__(self) -> str:
        ports = ",".join(str(n.port) for n in self.nodes if n.running) or "stopped"
        return f"<LocalCluster {self.engine.name} {len(self.nodes)} nodes {ports}>"

    @property
    def url(self) -> str:
        """URL of the first node (any node redirects a cluster client to the others)."""
        return self.nodes[0].url

    def client(self) -> RedisCluster:
        """A cluster-aware redis-py client (routes by slot, follows MOVED), bootstrapped from the first node."""
        first = self.nodes[0]
        if not first.running:
            raise EngineError("the local cluster is not running")
        return RedisCluster(host=first.host, port=first.port, socket_timeout=120)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalCluster:
        """Start every node, assign its slots, join them and wait for a healthy, agreed cluster.

        On any failure every node started so far is stopped before the error propagates.
        """
        if self.node_ids and all(n.running for n in self.nodes):
            return self
        self.stop()
        self.nodes = self._make_nodes()  # fresh servers: a previous start consumed the files
        admins: list[redis.Redis] = []
        try:
            for shard, node, file in zip(self.layout.shards, self.nodes, self.files):
                try:
                    node.start()
                except EngineStartError as exc:
                    source = f"file {os.fspath(file)}" if file is not None else "no file"
                    raise EngineStartError(f"node for shard {shard.name} ({source}): {exc}", log_tail=exc.log_tail,
                                           log_path=exc.log_path, returncode=exc.returncode) from None
            admins = [n.client(socket_timeout=30) for n in self.nodes]
            try:
                node_ids = [reply_text(a.execute_command("CLUSTER", "MYID")) for a in admins]
                self._assign(admins, node_ids)
                for index, admin in enumerate(admins):
                    # distinct epochs up front, as redis-cli does: no epoch-collision round after MEET
                    try:
                        admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                    except redis.ResponseError:
                        pass
                first = self.nodes[0]
                for admin in admins[1:]:
                    admin.execute_command("CLUSTER", "MEET", first.host, first.port)
                self._wait_converged(admins, node_ids)
                self.node_ids = node_ids
                self._add_replicas()
            except redis.RedisError as exc:
                raise EngineError(f"setting up the local {self.engine.name} cluster failed: {exc}") from None
        except BaseException:
            self.stop()
            raise
        finally:
            for admin in admins:
                admin.close()
        return self

    def _assign(self, admins: list[redis.Redis], node_ids: list[str]) -> None:
        """Add each node the slots the layout gives it, minus those it claimed for its keys at load."""
        ranged = self.engine.flavour == "valkey" or tuple(self.engine.version) >= (7, 0)
        for index, (shard, admin, node_id) in enumerate(zip(self.layout.shards, admins, node_ids)):
            claimed = [(s, e) for s, e, owner in _cluster_slots(admin) if owner == node_id]
            claimed_slots = {slot for s, e in claimed for slot in range(s, e + 1)}
            foreign = sorted(slot for slot in claimed_slots if not shard.owns(slot))
            if foreign:
                owners = sorted({self.layout.shards[self.layout.shard_of(s)].name for s in foreign})
                file = self.files[index]
                ranges = compress(foreign)
                what = (f"slot {ranges[0][0]}" if len(ranges) == 1 and ranges[0][0] == ranges[0][1]
                        else f"slots {format_ranges(ranges)}")
                raise EngineError(f"the file of shard {shard.name} ({os.fspath(file) if file else '?'}) holds keys "
                                  f"in {what}, which the layout gives to {', '.join(owners)}: "
                                  "keys were split into the wrong file")
            missing = compress(slot for s, e in shard.ranges for slot in range(s, e + 1)
                               if slot not in claimed_slots)
            if ranged:
                for i in range(0, len(missing), _RANGES_BATCH):
                    args = [x for pair in missing[i:i + _RANGES_BATCH] for x in pair]
                    admin.execute_command("CLUSTER", "ADDSLOTSRANGE", *args)
            else:
                slots = [slot for s, e in missing for slot in range(s, e + 1)]
                for i in range(0, len(slots), _ADDSLOTS_BATCH):
                    admin.execute_command("CLUSTER", "ADDSLOTS", *slots[i:i + _ADDSLOTS_BATCH])

    def _wait_converged(self, admins: list[redis.Redis], node_ids: list[str]) -> None:
        """Until every node says cluster_state:ok and reports exactly the expected owner of every slot."""
        expected = _merge([(s, e, node_id) for shard, node_id in zip(self.layout.shards, node_ids)
                           for s, e in shard.ranges])
        deadline = time.monotonic() + self.timeout
        why = "not checked yet"
        while True:
            pending = None
            for shard, admin in zip(self.layout.shards, admins):
                try:
                    info = _cluster_info(admin)
                    if info.get("cluster_state") != "ok":
                        pending = (f"node {shard.name} reports cluster_state:{info.get('cluster_state')}, "
                                   f"{info.get('cluster_known_nodes')} of {len(admins)} nodes known")
                    elif _cluster_slots(admin) != expected:
                        pending = f"node {shard.name} does not see the expected slot owners yet"
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    pending = f"node {shard.name} does not answer: {exc}"
                if pending:
                    break
            if pending is None:
                return
            why = pending
            if time.monotonic() > deadline:
                tails = "; ".join(f"{shard.name} (port {node.port}): {' | '.join(node.log_tail(_TAIL_LINES)) or '-'}"
                                  for shard, node in zip(self.layout.shards, self.nodes))
                raise EngineError(f"the {len(admins)}-node {self.engine.name} cluster did not form within "
                                  f"{self.timeout:g}s ({why}); last log lines: {tails}")
            time.sleep(_POLL)

    def _add_replicas(self) -> None:
        """Start ``replicas`` empty nodes per shard, make each replicate its primary, wait for sync."""
        first = self.nodes[0]
        self.replica_nodes = [[EngineServer(self.engine, config=self.config, cluster=True, assign_slots=False)
                               for _ in range(self.replicas)] for _ in self.nodes]
        pending: list[tuple[redis.Redis, str]] = []
        for primary_id, group in zip(self.node_ids, self.replica_nodes):
            for replica in group:
                replica.start()
                admin = replica.client(socket_timeout=30)
                admin.execute_command("CLUSTER", "MEET", first.host, first.port)
                pending.append((admin, primary_id))
        deadline = time.monotonic() + self.timeout
        try:
            for admin, primary_id in pending:
                while True:
                    try:  # the replica must have learnt about its primary through gossip first
                        admin.execute_command("CLUSTER", "REPLICATE", primary_id)
                        break
                    except redis.ResponseError as exc:
                        if time.monotonic() > deadline:
                            raise EngineError(f"a replica could not follow its primary: {exc}") from None
                        time.sleep(_POLL)
            for admin, _ in pending:
                while str(admin.info("replication").get("master_link_status")) != "up":
                    if time.monotonic() > deadline:
                        raise EngineError(f"a replica did not sync with its primary within {self.timeout:g}s")
                    time.sleep(_POLL)
        finally:
            for admin, _ in pending:
                admin.close()

    def stop(self) -> None:
        """Stop every node and remove its directory. Idempotent."""
        for node in reversed([n for group in self.replica_nodes for n in group] + self.nodes):
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - stop the others regardless
                log.exception("stopping %r failed", node)
        self.node_ids = []
        self.replica_nodes = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["LocalCluster", "read_layout"]
