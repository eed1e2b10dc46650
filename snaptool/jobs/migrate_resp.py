"""The Redis side of a migration: pipelined ``SET … PX`` and read-backs (``engines.resp``), routed by slot.

Migrated values are plain strings with a *relative* TTL (``PX`` computed at send time from
memcached's remaining lifetime), which a RESTORE payload cannot express, and the per-command cost
of redis-py would dominate a million small keys. So commands are built as bytes and sent in
batches, one batch in flight per node while the next is built; the replies of a batch of SETs are
confirmed with one comparison when they are all ``+OK``, and read-backs are compared the same way
with the replies they should be. In a cluster each key goes to the
primary that owns its slot (from CLUSTER SLOTS); ``MOVED`` updates the map and ``ASK`` is followed
for that command, so a slot that moves during the run does not lose keys.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any, Iterable

import redis

from ..engines.address import NodeAddress
from ..engines.resp import ConnectionLost, RespConnection, encode
from ..engines.slot_map import SlotMap, show_key
from ..engines.topology import is_cluster
from ..errors import EngineError

_MAX_HOPS = 8


class RespConn(RespConnection):
    """A logged-in connection to one node of the target, with the batches in flight on it and the
    keys it has confirmed (which a lost connection reports)."""

    def __init__(self, address: NodeAddress, timeout: float) -> None:
        self.confirmed = 0
        self.inflight: collections.deque[_Batch] = collections.deque()
        super().__init__(address, address.db, timeout, send_buffer=1 << 20)

    def lost(self, why: str) -> ConnectionLost:
        return ConnectionLost(f"lost the connection to {self.name} ({why}) after {self.confirmed:,} keys were "
                              "confirmed there", why)

    def ok_run(self, count: int) -> bool:
        """Consume ``count`` replies when they are all ``+OK`` (True), else leave them (False)."""
        return self.matches(b"+OK\r\n" * count)


@dataclass
class _Batch:
    keys: list[bytes]  # routing key of each command (for messages and redirects)
    commands: list[bytes]
    size: int = 0
    weight: int = 0  # keys the commands write (an MSET writes many)
    ok_only: bool = True  # every command answers +OK on success (SET), so one comparison confirms all


class RedisTarget:
    """A live node or cluster to write migrated keys into and read them back from."""

    def __init__(self, address: NodeAddress, *, timeout: float = 30.0, batch_keys: int = 1000,
                 batch_bytes: int = 4 << 20) -> None:
        self.address = address
        self.timeout = timeout
        self.batch_keys = batch_keys
        self.batch_bytes = batch_bytes
        self.cluster = is_cluster(address)
        self.pending: dict[str, _Batch] = {}
        self.redirects = 0
        self.nodes: SlotMap[RespConn] = SlotMap(address, self.cluster, lambda a: RespConn(a, timeout), timeout)

    def route(self, key: bytes) -> RespConn:
        return self.nodes.owner(key)

    def key_count(self) -> int:
        """Keys the target holds now (its database on a node; every primary of a cluster)."""
        return sum(int(a.control(lambda c: c.dbsize(), self.timeout)) for a in self.nodes.primaries())

    def describe(self) -> str:
        return f"{'cluster' if self.cluster else 'node'} {self.address.redacted()}"

    # -- writing ------------------------------------------------------------------------------

    def add(self, key: bytes, cmd: bytes, ok_reply: bool = True) -> None:
        """Queue one write whose node is the owner of ``key``; batches go out when full.
        ``ok_reply``: the command answers ``+OK`` on success (SET does, HSET does not)."""
        conn = self.route(key)
        batch = self.pending.get(conn.address.endpoint)
        if batch is None:
            batch = self.pending[conn.address.endpoint] = _Batch([], [])
        batch.keys.append(key)
        batch.commands.append(cmd)
        batch.size += len(cmd)
        batch.weight += 1
        batch.ok_only = batch.ok_only and ok_reply
        if len(batch.keys) >= self.batch_keys or batch.size >= self.batch_bytes:
            self._send(conn)

    def add_many(self, keys: list[bytes], commands: list[bytes], weight: int | None = None) -> None:
        """Queue SETs (or any ``+OK`` commands), each sent to the owner of its key; ``weight`` is
        how many keys they write (more than commands when some is an MSET: nodes only)."""
        if self.cluster:
            for key, cmd in zip(keys, commands):
                self.add(key, cmd)
            return
        if not keys:
            return
        conn = self.nodes.single
        batch = self.pending.get(conn.address.endpoint)
        if batch is None:
            batch = self.pending[conn.address.endpoint] = _Batch([], [])
        batch.keys.extend(keys)
        batch.commands.extend(commands)
        batch.size += sum(map(len, commands))
        batch.weight += len(keys) if weight is None else weight
        if batch.weight >= self.batch_keys or batch.size >= self.batch_bytes:
            self._send(conn)

    def _send(self, conn: RespConn) -> None:
        batch = self.pending.pop(conn.address.endpoint, None)
        if batch is None or not batch.keys:
            return
        conn.send(b"".join(batch.commands))
        conn.inflight.append(batch)
        while len(conn.inflight) > 1:
            self._settle(conn)

    def _settle(self, conn: RespConn) -> None:
        batch = conn.inflight.popleft()
        if batch.ok_only and conn.ok_run(len(batch.keys)):
            conn.confirmed += batch.weight
            return
        for key, cmd, reply in zip(batch.keys, batch.commands, conn.replies(len(batch.keys))):
            if isinstance(reply, redis.ResponseError):
                self._redirect(conn, key, cmd, reply)
            else:
                conn.confirmed += 1

    def _redirect(self, conn: RespConn, key: bytes, cmd: bytes, reply: redis.ResponseError) -> None:
        """Follow MOVED / ASK / TRYAGAIN for one command, synchronously (rare); stop on other errors."""
        for _ in range(_MAX_HOPS):
            code = str(reply).split(" ", 1)[0]
            if code not in ("MOVED", "ASK", "TRYAGAIN"):
                raise EngineError(f"{conn.name} refused the write of key {show_key(key)}: {reply}")
            if code == "TRYAGAIN":
                time.sleep(0.05)
                other = conn
            else:
                code, other = self.nodes.redirect(str(reply), f"the write of key {show_key(key)} on {conn.name}")
                self.redirects += 1
            prefix = encode(b"ASKING") if code == "ASK" else b""
            self.drain(other)
            other.send(prefix + cmd)
            replies = other.replies(2 if prefix else 1)
            reply = replies[-1]
            if not isinstance(reply, redis.ResponseError):
                other.confirmed += 1
                return
            conn = other
        raise EngineError(f"key {show_key(key)}: still not written after {_MAX_HOPS} redirects (last: {reply})")

    def drain(self, conn: RespConn) -> None:
        """Send what is queued for ``conn`` and confirm everything in flight on it."""
        self._send(conn)
        while conn.inflight:
            self._settle(conn)

    def send_pending(self) -> None:
        """Send what is queued for every node now, full batch or not (a relative TTL starts
        counting when the node runs the command: it must not wait in a queue)."""
        for conn in list(self.nodes.conns.values()):
            self._send(conn)

    def flush(self) -> int:
        """Send everything queued and confirm every reply; the keys confirmed so far."""
        for conn in list(self.nodes.conns.values()):
            self._send(conn)
        for conn in list(self.nodes.conns.values()):
            while conn.inflight:
                self._settle(conn)
        return self.confirmed

    @property
    def confirmed(self) -> int:
        return sum(c.confirmed for c in self.nodes.conns.values())

    # -- reading back ------------------------------------------------------------------------

    def read(self, requests: Iterable[tuple[bytes, bytes]]) -> list[Any]:
        """Replies to ``(routing key, command)`` pairs, in order: sent node by node in one round."""
        per: dict[str, list[int]] = {}
        bodies: dict[str, list[bytes]] = {}
        conns: dict[str, RespConn] = {}
        count = 0
        for index, (key, cmd) in enumerate(requests):
            conn = self.route(key)
            name = conn.address.endpoint
            conns[name] = conn
            per.setdefault(name, []).append(index)
            bodies.setdefault(name, []).append(cmd)
            count = index + 1
        out: list[Any] = [None] * count
        for name, conn in conns.items():
            self.drain(conn)
            conn.send(b"".join(bodies[name]))
        for name, conn in conns.items():
            for index, reply in zip(per[name], conn.replies(len(per[name]))):
                if isinstance(reply, redis.ResponseError) and str(reply).split(" ", 1)[0] in ("MOVED", "ASK"):
                    raise EngineError(f"{conn.name}: {reply} while reading back: the cluster's slots moved "
                                      "during the migration; run it again once they are settled")
                out[index] = reply
        return out

    def close(self) -> None:
        self.nodes.close()


__all__ = ["RedisTarget", "RespConn"]
