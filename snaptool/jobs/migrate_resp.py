"""The Redis side of a migration: pipelined ``SET … PX`` and read-backs over raw RESP, routed by slot.

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
import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterable


from ..engines.address import NodeAddress
from ..engines.topology import is_cluster
from ..errors import EngineError
from ..rdb.checksum import key_slot
from ..rdb.slots import SLOTS

_RECV = 1 << 18
_MAX_HOPS = 8


class RespError(str):
    """An error reply (kept as its text)."""


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def _show(key: bytes) -> str:
    return repr(key[:120])[1:] + ("…" if len(key) > 120 else "")


class RespConn:
    """One logged-in socket to one node; replies parsed from a byte buffer."""

    def __init__(self, address: NodeAddress, timeout: float) -> None:
        self.address = address
        self.name = address.redacted()
        self.sock = address.connect()
        self.sock.settimeout(timeout)
        with contextlib.suppress(OSError):  # room for a whole batch: sending never waits for the node to read
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.buf = b""
        self.confirmed = 0
        self.inflight: collections.deque[_Batch] = collections.deque()
        hello = []
        if address.password is not None:
            hello.append(command(b"AUTH", address.username.encode(), address.password.encode()) if address.username
                         else command(b"AUTH", address.password.encode()))
        if address.db:
            hello.append(command(b"SELECT", b"%d" % address.db))
        if hello:
            self.send(b"".join(hello))
            for reply in self.replies(len(hello)):
                if isinstance(reply, RespError):
                    self.close()
                    what = "authentication" if "AUTH" in reply or "WRONGPASS" in reply or "auth" in reply else "login"
                    raise EngineError(f"{what} to {self.name} failed: {reply}")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise self.lost(exc) from None

    def lost(self, exc: BaseException | str) -> EngineError:
        why = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        return EngineError(f"lost the connection to {self.name} ({why}) after {self.confirmed:,} keys were "
                           "confirmed there")

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(_RECV)
        except socket.timeout:
            raise self.lost("no reply in time") from None
        except OSError as exc:
            raise self.lost(exc) from None
        if not data:
            raise self.lost("the node closed the connection")
        return data

    def _need(self, buf: bytes, pos: int, size: int) -> bytes:
        parts, have = [buf[pos:]], len(buf) - pos
        while have < size:
            data = self._recv()
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def ok_run(self, count: int) -> bool:
        """Consume ``count`` replies when they are all ``+OK`` (True), else leave them (False)."""
        size = 5 * count
        if len(self.buf) < size:
            self.buf = self._need(self.buf, 0, size)
        if self.buf.startswith(b"+OK\r\n" * count):
            self.buf = self.buf[size:]
            return True
        return False

    def expect(self, blob: bytes) -> bool:
        """Consume the next replies if they are exactly ``blob`` (True); else consume nothing.

        Bytes are compared as they arrive, so a difference is seen without waiting for more than
        the server sends: while what came matches, the expected replies are not complete yet."""
        size = len(blob)
        parts, have = [self.buf], len(self.buf)
        if not blob.startswith(self.buf[:size]):
            return False
        while have < size:
            data = self._recv()
            parts.append(data)
            if not blob.startswith(data[:size - have], have):
                self.buf = b"".join(parts)
                return False
            have += len(data)
        buf = b"".join(parts) if len(parts) > 1 else self.buf
        self.buf = buf[size:]
        return True

    def integers(self, count: int) -> list[Any]:
        """The next ``count`` replies when they are integers (PTTL), parsed in one go."""
        while True:
            lines = self.buf.split(b"\r\n", count)
            if len(lines) > count:
                break
            self.buf = self._need(self.buf, 0, len(self.buf) + 1)
        head = lines[:count]
        if all(line[:1] == b":" for line in head):
            self.buf = lines[count]
            return [int(line[1:]) for line in head]
        return self.replies(count)

    def array(self) -> list[Any] | RespError:
        """The next reply when it is an array of plain replies (MGET), or the error sent instead."""
        end = self.buf.find(b"\r\n")
        while end < 0:
            self.buf = self._need(self.buf, 0, len(self.buf) + 1)
            end = self.buf.find(b"\r\n")
        head = self.buf[:end]
        if head[:1] == b"-":
            self.buf = self.buf[end + 2:]
            return RespError(head[1:].decode("utf-8", "replace"))
        if head[:1] != b"*":
            raise EngineError(f"{self.name}: expected an array, got {head[:40]!r}")
        self.buf = self.buf[end + 2:]
        return self.replies(int(head[1:]))

    def replies(self, count: int) -> list[Any]:
        """The next ``count`` replies: bytes (bulk), None (nil), int, str (status) or RespError."""
        out: list[Any] = []
        append = out.append
        buf, pos = self.buf, 0
        while len(out) < count:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                buf, pos = self._need(buf, pos, len(buf) - pos + 1), 0
                continue
            kind = buf[pos:pos + 1]
            if kind == b"$":
                size = int(buf[pos + 1:end])
                if size < 0:
                    append(None)
                    pos = end + 2
                    continue
                start = end + 2
                if len(buf) < start + size + 2:
                    buf, pos = self._need(buf, pos, start + size + 2 - pos), 0
                    continue
                append(buf[start:start + size])
                pos = start + size + 2
            elif kind == b":":
                append(int(buf[pos + 1:end]))
                pos = end + 2
            elif kind == b"+":
                append(buf[pos + 1:end].decode())
                pos = end + 2
            elif kind == b"-":
                append(RespError(buf[pos + 1:end].decode("utf-8", "replace")))
                pos = end + 2
            else:
                raise EngineError(f"{self.name}: unexpected reply {buf[pos:pos + 40]!r}")
        self.buf = buf[pos:]
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


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
        self.conns: dict[str, RespConn] = {}
        self.pending: dict[str, _Batch] = {}
        self.redirects = 0
        self._slots: list[RespConn | None] = []
        try:
            if self.cluster:
                self._load_slots()
            else:
                self._single = self._conn(address)
        except BaseException:
            self.close()
            raise

    # -- topology ---------------------------------------------------------------------------

    def _control(self, address: NodeAddress, call: Any) -> Any:
        return address.control(call, self.timeout)

    def _load_slots(self) -> None:
        reply = self._control(self.address, lambda c: c.execute_command("CLUSTER", "SLOTS"))
        slots: list[RespConn | None] = [None] * SLOTS
        for entry in reply:
            host = entry[2][0].decode() if isinstance(entry[2][0], bytes) else str(entry[2][0])
            conn = self._conn(self.address.with_endpoint(host, int(entry[2][1])))
            for slot in range(int(entry[0]), int(entry[1]) + 1):
                slots[slot] = conn
        self._slots = slots

    def _conn(self, address: NodeAddress) -> RespConn:
        conn = self.conns.get(address.endpoint)
        if conn is None:
            conn = self.conns[address.endpoint] = RespConn(address, self.timeout)
        return conn

    def route(self, key: bytes) -> RespConn:
        if not self.cluster:
            return self._single
        conn = self._slots[key_slot(key)]
        if conn is None:
            raise EngineError(f"slot {key_slot(key)} of key {_show(key)} is served by no node of the cluster at "
                              f"{self.address.redacted()}")
        return conn

    @property
    def primaries(self) -> list[NodeAddress]:
        return [c.address for c in self.conns.values()] if self.cluster else [self.address]

    def key_count(self) -> int:
        """Keys the target holds now (its database on a node; every primary of a cluster)."""
        return sum(int(self._control(a, lambda c: c.dbsize())) for a in self.primaries)

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
        conn = self._single
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
            if isinstance(reply, RespError):
                self._redirect(conn, key, cmd, reply)
            else:
                conn.confirmed += 1

    def _redirect(self, conn: RespConn, key: bytes, cmd: bytes, reply: RespError) -> None:
        """Follow MOVED / ASK / TRYAGAIN for one command, synchronously (rare); stop on other errors."""
        for _ in range(_MAX_HOPS):
            code, *rest = reply.split()
            if code not in ("MOVED", "ASK", "TRYAGAIN"):
                raise EngineError(f"{conn.name} refused the write of key {_show(key)}: {reply}")
            if code == "TRYAGAIN":
                time.sleep(0.05)
                other = conn
                prefix = b""
            else:
                host, _, port = rest[1].rpartition(":")
                other = self._conn(self.address.with_endpoint(host or self.address.host, int(port)))
                self.redirects += 1
                if code == "MOVED":
                    self._slots[int(rest[0])] = other
                    prefix = b""
                else:
                    prefix = command(b"ASKING")
            self.drain(other)
            other.send(prefix + cmd)
            replies = other.replies(2 if prefix else 1)
            reply = replies[-1]
            if not isinstance(reply, RespError):
                other.confirmed += 1
                return
            conn = other
        raise EngineError(f"key {_show(key)}: still not written after {_MAX_HOPS} redirects (last: {reply})")

    def drain(self, conn: RespConn) -> None:
        """Send what is queued for ``conn`` and confirm everything in flight on it."""
        self._send(conn)
        while conn.inflight:
            self._settle(conn)

    def send_pending(self) -> None:
        """Send what is queued for every node now, full batch or not (a relative TTL starts
        counting when the node runs the command: it must not wait in a queue)."""
        for conn in list(self.conns.values()):
            self._send(conn)

    def flush(self) -> int:
        """Send everything queued and confirm every reply; the keys confirmed so far."""
        for conn in list(self.conns.values()):
            self._send(conn)
        for conn in list(self.conns.values()):
            while conn.inflight:
                self._settle(conn)
        return self.confirmed

    @property
    def confirmed(self) -> int:
        return sum(c.confirmed for c in self.conns.values())

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
                if isinstance(reply, RespError) and reply.split(" ", 1)[0] in ("MOVED", "ASK"):
                    raise EngineError(f"{conn.name}: {reply} while reading back: the cluster's slots moved "
                                      "during the migration; run it again once they are settled")
                out[index] = reply
        return out

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


__all__ = ["RedisTarget", "RespConn", "RespError", "command"]
