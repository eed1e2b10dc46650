"""Where migrated keys go: a live node or cluster (pipelined SET with PX), or an RDB file (the RDB writer).

Both take the same three calls — a batch of strings with absolute deadlines on our clock, a flags
field for the side hash, finish — so the migration job does not care which it feeds. The file is
written under a temporary name in its directory and becomes ``dump.rdb`` only once the caller has
proven it (:meth:`RdbFileSink.commit`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

from ..engines.address import NodeAddress, TlsOptions
from ..engines.resp import encode
from ..rdb.builder import default_aux
from ..rdb.encoder import encode_value
from ..rdb.primitives import LZF_MIN_LENGTH, encode_ms_time, encode_string
from ..rdb.targets import Target
from ..rdb.writer import RdbWriter
from .migrate_check import Item
from .migrate_ledger import NO_EXPIRY
from .migrate_resp import RedisTarget

FILE_NAME = "dump.rdb"
_LENGTH = [bytes((n,)) for n in range(LZF_MIN_LENGTH + 1)]


def _string(data: bytes) -> bytes:
    """encode_string, with the common short case inline: longer than any integer form, too short for LZF."""
    if 11 < len(data) <= LZF_MIN_LENGTH:
        return _LENGTH[len(data)] + data
    return encode_string(data)


def now_ms() -> int:
    return int(time.time() * 1000)


def _set_px(key: bytes, value: bytes, ttl_ms: int) -> bytes:
    ttl = b"%d" % ttl_ms
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n" % (
        len(key), key, len(value), value, len(ttl), ttl)


class RedisSink:
    """Writes into a live node or cluster; a key whose deadline has passed is skipped and counted."""

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.written = 0
        self.expired = 0
        self.flag_fields = 0

    def write(self, items: list[Item]) -> None:
        """SET each key with what is left of its TTL now (keys without a TTL in one MSET on a node);
        keys whose deadline has passed are skipped."""
        now = now_ms()
        if not all(item[2] == NO_EXPIRY or item[2] > now for item in items):
            live = [item for item in items if item[2] == NO_EXPIRY or item[2] > now]
            self.expired += len(items) - len(live)
            items = live
        if not items:
            return
        if self.target.cluster:  # one command per key: each goes to the owner of its slot
            self.target.add_many([item[0] for item in items], [
                b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(k), k, len(v), v) if d == NO_EXPIRY
                else _set_px(k, v, d - now) for k, v, d, _ in items])
        else:
            plain = [item for item in items if item[2] == NO_EXPIRY]
            keys: list[bytes] = []
            commands: list[bytes] = []
            if plain:
                keys.append(plain[0][0])
                commands.append(b"*%d\r\n$4\r\nMSET\r\n" % (2 * len(plain) + 1) + b"".join(
                    [b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(k), k, len(v), v) for k, v, _, _ in plain]))
            if len(plain) < len(items):
                expiring = [item for item in items if item[2] != NO_EXPIRY]
                keys += [item[0] for item in expiring]
                commands += [_set_px(k, v, d - now) for k, v, d, _ in expiring]
            self.target.add_many(keys, commands, weight=len(items))
        self.written += len(items)

    def push(self) -> None:
        """Send what is queued now: relative TTLs were computed when queued and start counting
        when the node runs the command, so nothing may wait in a queue."""
        self.target.send_pending()

    def flag(self, name: bytes, field: bytes, flags: int) -> None:
        self.target.add(name, encode(b"HSET", name, field, b"%d" % flags), ok_reply=False)
        self.flag_fields += 1

    def forget_flags(self, name: bytes, fields: list[bytes]) -> None:
        """Drop side-hash fields of keys written again (their flags may be 0 now); the ones that
        still have flags are set again right after."""
        for start in range(0, len(fields), 1000):
            chunk = fields[start:start + 1000]
            if chunk:
                self.target.add(name, encode(b"HDEL", name, *chunk), ok_reply=False)

    def finish(self) -> None:
        self.target.flush()


class RdbFileSink:
    """Writes an RDB file for ``target`` (strings, plus the side hash at the end)."""

    def __init__(self, directory: str, target: Target, name: str = FILE_NAME) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, name)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        self.fh = os.fdopen(fd, "wb", buffering=1 << 20)
        self.rdb = target
        self.writer = RdbWriter(self.fh, target)
        self.writer.header(default_aux(target))
        self.writer.select_db(0)
        self.side: dict[bytes, list[tuple[bytes, bytes, None]]] = {}
        self.written = 0
        self.expired = 0
        self.flag_fields = 0
        self.size = 0
        self._seconds = target.rdb_version < 3  # RDB 1-2 keep expiries in seconds

    def write(self, items: list[Item]) -> None:
        """String records with their absolute expiry; keys whose deadline has passed are skipped."""
        now = now_ms()
        parts = []
        written = 0
        for key, value, deadline, _ in items:
            if deadline == NO_EXPIRY:
                parts.append(b"\x00" + _string(key) + _string(value))
            elif deadline > now:
                when = (b"\xfd" + (deadline // 1000).to_bytes(4, "little") if self._seconds
                        else b"\xfc" + encode_ms_time(deadline))
                parts.append(when + b"\x00" + _string(key) + _string(value))
            else:
                self.expired += 1
                continue
            written += 1
            if len(parts) >= 256 or len(value) > 1 << 20:
                self.writer.raw(b"".join(parts))
                parts = []
        if parts:
            self.writer.raw(b"".join(parts))
        self.written += written

    def flag(self, name: bytes, field: bytes, flags: int) -> None:
        self.side.setdefault(name, []).append((field, b"%d" % flags, None))
        self.flag_fields += 1

    def push(self) -> None:
        """Nothing waits: records are written as they come."""

    def finish(self) -> None:
        """The side hash, EOF and checksum; the file is complete (not yet under its name). Once only."""
        if self.fh.closed:
            return
        for name, fields in self.side.items():
            encoded = encode_value("hash", fields, self.rdb)
            if encoded is not None:
                self.writer.value(name, encoded)
        self.side.clear()
        self.writer.finish()
        self.size = self.writer.bytes_written
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()

    def commit(self) -> str:
        """Give the proven file its real name."""
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def open_redis(url: str, *, tls: TlsOptions | None = None, username: str | None = None, password: str | None = None,
               timeout: float = 30.0) -> RedisTarget:
    """A live node or cluster named by URL, logged in as ``restore`` would."""
    return RedisTarget(NodeAddress.parse(url, tls=tls, username=username, password=password), timeout=timeout)


__all__ = ["FILE_NAME", "RdbFileSink", "RedisSink", "now_ms", "open_redis"]
