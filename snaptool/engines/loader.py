"""Load RDB records into a live node or cluster with pipelined RESTORE over raw sockets.

redis-py spends more time per command than the engine spends restoring a small key, so the
loader writes RESP itself: each key becomes one ``RESTORE key ttl payload [ABSTTL] [REPLACE]
[IDLETIME s | FREQ f]`` command appended to a per-node batch, batches are sent whole, and the
replies of one batch are read while the engine works on the next. Every reply to what the loader
sends is a one-line ``+OK`` or ``-ERROR``, so a batch that came back as nothing but ``+OK`` is
confirmed with one comparison of bytes; only a batch holding an error is parsed reply by reply
(the connection is :class:`snaptool.engines.resp.RespConnection`).

RESTORE takes IDLETIME or FREQ, never both: the loader sends the one the record carries. An
engine whose maxmemory-policy keeps the other kind of hint ignores it (``objectSetLRUOrLFU``),
so either is safe on any node.

In a cluster the loader routes by key slot over one connection per primary, following
``-MOVED`` (the slot map is updated) and ``-ASK`` (``ASKING`` then the command, on that node
only). A record too large to hold in memory (spilled by the reader) is streamed: the bulk header
first, then the payload in chunks; it is confirmed before :meth:`RestoreLoader.add` returns, so
the caller may release the record at once.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import redis

from ..errors import EngineError
from ..rdb.rewriter import Rewriter
from ..rdb.checksum import crc64
from ..rdb.dump import DumpPayload, dump_version, open_payload
from ..rdb.items import Record
from ..rdb.source import Spill
from ..rdb.targets import ENGINES, Target
from .address import NodeAddress
from .resp import ConnectionLost, RespConnection, bulk, encode, reply_text
from .slot_map import SlotMap, show_key

_OK = b"+OK\r\n"
_MAX_HOPS = 16  # MOVED/ASK/TRYAGAIN rounds for one key before giving up
_TRYAGAIN_SLEEP = 0.05
_IDLE_MAX = (1 << 63) - 1


@dataclass
class LoadCounts:
    """What a load did; ``per_node`` counts confirmed keys by endpoint (host:port)."""

    restored: int = 0
    expired_skipped: int = 0
    bytes: int = 0  # payload bytes of the restored keys
    per_db: dict[int, int] = field(default_factory=dict)
    per_node: dict[str, int] = field(default_factory=dict)
    redirects: int = 0  # MOVED and ASK replies followed
    reencoded: int = 0  # payloads rebuilt for an older target
    empty_skipped: int = 0  # empty collections (engines hold none; RESTORE refuses them)
    dropped: dict[str, int] = field(default_factory=dict)  # losses allowed with allow_lossy


# --------------------------------------------------------------------------- one connection

class _Entry:
    """A command awaiting its reply that a plain RESTORE string cannot describe: a control
    command (SELECT, ASKING: ``key`` is None), a streamed RESTORE (``payload`` set, rebuilt from
    ``record`` to send again) or a RESTORE sent again after a redirect (``hops`` counts them)."""

    __slots__ = ("key", "db", "cmd", "size", "record", "payload", "head", "tail", "hops")

    def __init__(self, key: bytes | None, db: int, cmd: bytes | None, size: int = 0) -> None:
        self.key = key
        self.db = db
        self.cmd = cmd
        self.size = size  # payload bytes
        self.record: Record | None = None
        self.payload: DumpPayload | None = None
        self.head = self.tail = b""
        self.hops = 0


def _parse_restore(cmd: bytes) -> tuple[bytes, int]:
    """Key and payload size of a RESTORE command the loader built (read back only after an error)."""
    pos = cmd.index(b"RESTORE\r\n") + 9
    fields = []
    for _ in range(3):  # key, ttl, payload header
        end = cmd.index(b"\r\n", pos)
        size = int(cmd[pos + 1:end])
        fields.append((end + 2, size))
        pos = end + 2 + size + 2
    (key_at, key_len), _, (_, payload_len) = fields
    return cmd[key_at:key_at + key_len], payload_len


class _Batch:
    """Commands sent together (or being gathered), with what confirming them all adds.

    ``entries`` holds one item per reply: the bytes of a plain RESTORE, or an :class:`_Entry`.
    Keys per database are tallied by runs: ``per_db`` gets a run's count when SELECT ends it.
    """

    __slots__ = ("entries", "plain", "keys", "bytes", "size", "per_db", "start_db", "db", "mark")

    def __init__(self, db: int) -> None:
        self.entries: list[bytes | _Entry] = []
        self.plain = True  # every entry is bytes: the batch is sent with one join
        self.keys = 0
        self.bytes = 0
        self.size = 0
        self.per_db: dict[int, int] = {}
        self.start_db = self.db = db
        self.mark = 0

    def end_run(self) -> None:
        if self.keys > self.mark:
            self.per_db[self.db] = self.per_db.get(self.db, 0) + self.keys - self.mark
            self.mark = self.keys

    def add_entry(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.plain = False
        if entry.key is not None:
            self.keys += 1
            self.bytes += entry.size
            self.size += entry.size if entry.cmd is None else len(entry.cmd)
        elif entry.cmd is not None:
            self.size += len(entry.cmd)


class _Conn:
    """A connection to one primary: the batch being gathered and the batches awaiting replies."""

    def __init__(self, address: NodeAddress, timeout: float) -> None:
        self.address = address
        self.endpoint = address.endpoint
        self.name = address.redacted()
        self.timeout = timeout
        self.resp: RespConnection | None = None
        self.db = 0  # database selected by what was queued so far
        self.batch = _Batch(0)
        self.inflight: collections.deque[_Batch] = collections.deque()
        self.confirmed = 0
        self.sent = 0

    def open(self) -> None:
        self.resp = RespConnection(self.address, timeout=self.timeout)

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close()
            self.resp = None

    def select(self, db: int) -> None:
        """Queue SELECT db (standalone nodes: records of several databases)."""
        batch = self.batch
        batch.end_run()
        batch.add_entry(_Entry(None, db, encode(b"SELECT", db)))
        batch.db = db
        self.db = db

    # -- I/O: errors name what this connection had confirmed -------------------------------------

    def lost(self, why: str) -> EngineError:
        return EngineError(f"connection to {self.name} lost ({why}): {self.confirmed} keys confirmed there, "
                           f"{self.sent - self.confirmed} sent without a reply")

    def _send_raw(self, data: bytes) -> None:
        assert self.resp is not None
        try:
            self.resp.send(data)
        except ConnectionLost as exc:
            raise self.lost(exc.why) from None

    def read_replies(self, n: int) -> list[Any] | None:
        """The next ``n`` replies; None when all of them are ``+OK`` (the common case, confirmed
        with one comparison), else each parsed (errors as ``redis.ResponseError``)."""
        assert self.resp is not None
        try:
            if self.resp.matches(_OK * n):
                return None
            return self.resp.replies(n)
        except ConnectionLost as exc:
            raise self.lost(exc.why) from None

    def send_batch(self) -> None:
        """Send the gathered batch (streamed payloads chunk by chunk); it is then in flight."""
        batch = self.batch
        if not batch.entries:
            return
        batch.end_run()
        self.batch = _Batch(self.db)
        if batch.plain:
            self._send_raw(b"".join(batch.entries))  # type: ignore[arg-type]
        else:
            pending: list[bytes] = []
            for entry in batch.entries:
                if type(entry) is bytes:
                    pending.append(entry)
                elif entry.cmd is not None:
                    pending.append(entry.cmd)
                else:
                    pending.append(entry.head)
                    self._send_raw(b"".join(pending))
                    for chunk in entry.payload.chunks():
                        self._send_raw(chunk)
                    pending = [entry.tail]
            self._send_raw(b"".join(pending))
        self.sent += batch.keys
        self.inflight.append(batch)


# --------------------------------------------------------------------------- the loader

class RestoreLoader:
    """Pipelined RESTORE of records into the node (or the cluster of the node) at ``address``.

    ``target`` (what payloads are encoded for) is detected from ``INFO server`` unless given;
    ``replace`` overwrites existing keys (otherwise an existing key stops the load). Records are
    re-encoded where the target cannot load their type, as ``convert`` would; a record the target
    would lose part of (hash field TTLs before RDB 12) stops the load unless ``allow_lossy``.

    Each record goes to its own database (``SELECT`` on a node; a cluster has only db 0), so the
    address's database number is not used. Keys are confirmed in batches: :meth:`finish` returns
    once every reply is in. After an EngineError the loader's state is undefined: close it.
    """

    def __init__(self, address: NodeAddress, *, replace: bool = False, target: Target | None = None,
                 batch_keys: int = 2000, batch_bytes: int = 8 << 20, timeout: float = 60.0,
                 allow_lossy: bool = False) -> None:
        self.address = address
        self.replace = replace
        self.batch_keys = max(1, batch_keys)
        self.batch_bytes = max(1, batch_bytes)
        self.timeout = timeout
        self.allow_lossy = allow_lossy
        self.counts = LoadCounts()
        info = self._control(address, lambda c: {**c.info("server"), **c.info("cluster")})
        self.cluster: bool = str(info.get("cluster_enabled", "0")) == "1"
        self.target: Target = target or target_from_info(info)
        self._version = dump_version(self.target).to_bytes(2, "little")
        self._rewriter = Rewriter(self.target)
        self._tail = b"$7\r\nREPLACE\r\n" if replace else b""
        # RESTORE key 0|ttl payload [ABSTTL] [REPLACE], the payload given as its body and CRC bytes
        argc = 5 if replace else 4
        self._plain = b"*%d\r\n$7\r\nRESTORE\r\n$%%d\r\n%%b\r\n$1\r\n0\r\n$%%d\r\n%%b%%b\r\n%b" % (
            argc, self._tail)
        self._expiring = (b"*%d\r\n$7\r\nRESTORE\r\n$%%d\r\n%%b\r\n$%%d\r\n%%b\r\n$%%d\r\n%%b%%b\r\n"
                          b"$6\r\nABSTTL\r\n%b" % (argc + 1, self._tail))
        self._nodes: SlotMap[_Conn] = SlotMap(address, self.cluster, self._open, timeout)

    # -- control commands (redis-py: few of them, latency does not matter) ----------------------

    def _control(self, address: NodeAddress, call: Any) -> Any:
        return address.control(call, self.timeout)

    def _open(self, address: NodeAddress) -> _Conn:
        conn = _Conn(address, self.timeout)
        conn.open()
        return conn

    def nonempty(self) -> dict[str, int]:
        """Keys already there: by database (``db0`` …) on a node, by endpoint in a cluster; only non-zero."""
        if not self.cluster:
            info = self._control(self.address, lambda c: c.info("keyspace"))
            return {name: int(v["keys"]) for name, v in info.items() if int(v.get("keys", 0))}
        out = {}
        for address in self._nodes.primaries():
            size = int(self._control(address, lambda c: c.dbsize()))
            if size:
                out[address.endpoint] = size
        return out

    def flush_all(self) -> None:
        """FLUSHALL on every primary (replicas follow)."""
        for address in self._nodes.primaries():
            self._control(address, lambda c: c.execute_command("FLUSHALL"))

    # -- queueing --------------------------------------------------------------------------------

    def add(self, record: Record, now_ms: int | None = None) -> None:
        """Queue one key; a key already expired (at ``now_ms``, default now) is skipped and counted."""
        expire = record.expire_ms
        if expire is not None and expire <= (now_ms if now_ms is not None else int(time.time() * 1000)):
            self.counts.expired_skipped += 1
            return
        raw = record.raw
        if record.type or type(raw) is not bytes:
            self._add_other(record)
            return
        # A string in memory, the bulk of most data sets: its bytes load as they are on every
        # engine, so the command is built here in one go.
        key = record.key
        body = raw[:1] + raw[record.value_start:] + self._version
        size = len(body) + 8
        if record.idle is None and record.freq is None:
            if expire:
                ttl = b"%d" % expire
                cmd = self._expiring % (len(key), key, len(ttl), ttl, size, body, crc64(body).to_bytes(8, "little"))
            else:
                cmd = self._plain % (len(key), key, size, body, crc64(body).to_bytes(8, "little"))
        else:
            head, tail = self._frame(record)
            cmd = b"%b$%d\r\n%b%b%b" % (head, size, body, crc64(body).to_bytes(8, "little"), tail)
        if self.cluster:
            conn = self._route(record)
        else:
            conn = self._nodes.single
            if record.db != conn.db:
                conn.select(record.db)
        batch = conn.batch
        batch.entries.append(cmd)
        batch.keys += 1
        batch.bytes += size
        batch.size += len(cmd)
        if batch.keys >= self.batch_keys or batch.size >= self.batch_bytes:
            self._send(conn)

    def add_all(self, records: Iterable[Record], now_ms: int | None = None) -> LoadCounts:
        """Add every record (releasing spilled ones), then :meth:`finish`."""
        for record in records:
            try:
                self.add(record, now_ms)
            finally:
                record.release()
        return self.finish()

    def _route(self, record: Record) -> _Conn:
        if self.cluster and record.db:
            raise EngineError(f"{self.address.redacted()} is a cluster, which has database 0 only: "
                              f"key {show_key(record.key)} is in db {record.db}")
        return self._nodes.owner(record.key)

    def _frame(self, record: Record) -> tuple[bytes, bytes]:
        """The RESTORE command around its payload: what comes before the payload's bulk header
        (array header, command name, key, ttl) and what follows the payload (options)."""
        key, expire = record.key, record.expire_ms
        argc = 4
        tail = b"\r\n"
        if expire:
            ttl = b"%d" % expire
            tail += b"$6\r\nABSTTL\r\n"
            argc += 1
        else:
            ttl = b"0"
        if self.replace:
            tail += self._tail
            argc += 1
        if record.idle is not None:
            tail += b"$8\r\nIDLETIME\r\n" + bulk(b"%d" % min(record.idle, _IDLE_MAX))
            argc += 2
        elif record.freq is not None:
            tail += b"$4\r\nFREQ\r\n" + bulk(b"%d" % record.freq)
            argc += 2
        head = b"*%d\r\n$7\r\nRESTORE\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (argc, len(key), key, len(ttl), ttl)
        return head, tail

    def _add_other(self, record: Record) -> None:
        """Any record but a string in memory: copied or re-encoded as convert would, maybe streamed."""
        conn = self._route(record)
        rewriter = self._rewriter
        reencoded, empty = rewriter.reencoded, rewriter.empty_skipped
        payload = open_payload(record, self.target, rewriter)
        rewriter.losses.check(self.target, self.allow_lossy)
        self.counts.reencoded += rewriter.reencoded - reencoded
        self.counts.empty_skipped += rewriter.empty_skipped - empty
        if rewriter.losses.counts:
            self.counts.dropped = dict(rewriter.losses.counts)
        if payload is None:
            return
        if not isinstance(record.raw, Spill) and payload.size <= self.batch_bytes:
            data = payload.to_bytes()
            head, tail = self._frame(record)
            self._queue(conn, _Entry(record.key, record.db, b"%b$%d\r\n%b%b" % (head, len(data), data, tail),
                                     len(data)))
            return
        entry = _Entry(record.key, record.db, None, payload.size)
        entry.record = record
        self._queue(conn, self._stream_entry(entry, payload))
        self._settle()  # confirmed (or redirected and confirmed) while the record is still readable

    def _stream_entry(self, entry: _Entry, payload: DumpPayload) -> _Entry:
        assert entry.record is not None
        head, entry.tail = self._frame(entry.record)
        entry.head = head + b"$%d\r\n" % payload.size
        entry.payload = payload
        return entry

    def _queue(self, conn: _Conn, entry: _Entry) -> None:
        if entry.db != conn.db:
            conn.select(entry.db)
        batch = conn.batch
        batch.add_entry(entry)
        if batch.keys >= self.batch_keys or batch.size >= self.batch_bytes:
            self._send(conn)

    def _requeue(self, conn: _Conn, entry: _Entry) -> None:
        """Queue a RESTORE again (after a redirect or TRYAGAIN); it goes with the connection's next batch."""
        if entry.cmd is None:
            assert entry.record is not None
            self._stream_entry(entry, open_payload(entry.record, self.target, Rewriter(self.target)))
        if entry.db != conn.db:
            conn.select(entry.db)
        conn.batch.add_entry(entry)

    # -- sending and replies -----------------------------------------------------------------------

    def _send(self, conn: _Conn) -> None:
        """Send the connection's batch; keep at most one other batch in flight meanwhile."""
        conn.send_batch()
        while len(conn.inflight) > 1:
            self._settle_oldest(conn)

    def _settle_oldest(self, conn: _Conn) -> None:
        """Read the replies of the oldest batch in flight on ``conn`` and count or handle them."""
        batch = conn.inflight.popleft()
        lines = conn.read_replies(len(batch.entries))
        counts = self.counts
        if lines is None:
            counts.restored += batch.keys
            counts.bytes += batch.bytes
            for db, n in batch.per_db.items():
                counts.per_db[db] = counts.per_db.get(db, 0) + n
            counts.per_node[conn.endpoint] = counts.per_node.get(conn.endpoint, 0) + batch.keys
            conn.confirmed += batch.keys
            return
        db = batch.start_db
        for item, line in zip(batch.entries, lines):
            if type(item) is bytes:
                key, size = _parse_restore(item)
                entry = _Entry(key, db, item, size)
            else:
                entry = item
                if entry.key is None and entry.db >= 0:
                    db = entry.db  # a SELECT
            if isinstance(line, redis.ResponseError):
                self._failed(conn, entry, str(line).strip())
            elif entry.key is not None:
                self._confirm(conn, entry)

    def _confirm(self, conn: _Conn, entry: _Entry) -> None:
        counts = self.counts
        counts.restored += 1
        counts.bytes += entry.size
        counts.per_db[entry.db] = counts.per_db.get(entry.db, 0) + 1
        counts.per_node[conn.endpoint] = counts.per_node.get(conn.endpoint, 0) + 1
        conn.confirmed += 1

    def _failed(self, conn: _Conn, entry: _Entry, message: str) -> None:
        """An error reply: follow MOVED/ASK/TRYAGAIN, stop the load on anything else."""
        if entry.key is None:
            what = "ASKING" if entry.db < 0 else f"SELECT {entry.db}"
            raise EngineError(f"{what} on {conn.name} failed: {message}")
        key = show_key(entry.key)
        code = message.split(" ", 1)[0]
        conn.sent -= 1  # answered: it is either sent again or the load stops
        if code == "BUSYKEY":
            raise EngineError(f"key {key} already exists on {conn.name} (use --replace or --flush)")
        if code not in ("MOVED", "ASK", "TRYAGAIN"):
            raise EngineError(f"RESTORE of key {key} on {conn.name} failed: {message}")
        entry.hops += 1
        if entry.hops > _MAX_HOPS:
            raise EngineError(f"key {key}: still not restored after {_MAX_HOPS} redirects or retries "
                              f"(last from {conn.name}: {message})")
        if code == "TRYAGAIN":
            time.sleep(_TRYAGAIN_SLEEP)
            self._requeue(self._nodes.owner(entry.key), entry)
            return
        code, other = self._nodes.redirect(message, f"RESTORE of key {key} on {conn.name}")
        self.counts.redirects += 1
        if code == "ASK":
            other.batch.add_entry(_Entry(None, -1, encode(b"ASKING")))
        self._requeue(other, entry)

    def _settle(self) -> None:
        """Send everything queued and read every reply, following redirects, until all is confirmed."""
        while True:
            busy = False
            for conn in list(self._nodes.conns.values()):
                if conn.batch.entries:
                    conn.send_batch()
                while conn.inflight:
                    busy = True
                    self._settle_oldest(conn)
            if not busy and not any(c.batch.entries for c in self._nodes.conns.values()):
                return

    def finish(self) -> LoadCounts:
        """Send what is queued and wait for every reply; the counts of the whole load so far."""
        self._settle()
        return self.counts

    def close(self) -> None:
        self._nodes.close()

    def __enter__(self) -> RestoreLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def target_from_info(info: dict[str, Any]) -> Target:
    """The target of a live engine from its INFO server fields (``valkey_version`` wins over
    ``redis_version``, which Valkey sets to the Redis release it forked from). A release snaptool
    does not list maps to the newest listed one before it (same RDB version or an older one)."""
    if info.get("valkey_version") or reply_text(info.get("server_name", "")).lower() == "valkey":
        flavour, text = "valkey", reply_text(info.get("valkey_version") or info.get("redis_version", "0"))
    else:
        flavour, text = "redis", reply_text(info.get("redis_version", "0"))
    version = tuple(int(x) for x in text.split(".")[:2] if x.isdigit())
    known = sorted((t for t in ENGINES.values() if t.flavour == flavour), key=lambda t: t.version)
    older = [t for t in known if t.version <= version]
    return older[-1] if older else known[0]
