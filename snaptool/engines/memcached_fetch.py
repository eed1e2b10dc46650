"""Read values, flags, remaining TTL and cas of listed keys: pipelined meta ``mg``, or ``gets`` on old servers.

``mg <key> v f t c`` answers with everything a migration needs in one reply, and its ``t`` is the
*remaining* TTL, so no arithmetic with memcached's own clock (which drifts from wall time) is
needed. Keys that are not safe on the text protocol (spaces, control bytes: written through the
binary protocol or meta ``b``) are sent base64-encoded with ``b``; ``k`` is never asked for,
because for such keys memcached echoes the raw key, CRLF included. Without ``q`` every command
gets exactly one reply (``EN`` on a miss), so replies are matched to keys by position; each batch
ends with ``mn``, whose ``MN`` marks the end of its replies, and a batch of plain hits (the usual
case) is parsed in bulk rather than reply by reply (:func:`columns`).

Batches are spread over several connections (memcached serves each on one of its worker
threads), one batch in flight on each, so the server works on one while the replies of another
are parsed. Servers before 1.6.10 are read with ``gets`` through pymemcache, with flags from its
VALUE line and the TTL from the dump's absolute ``exp`` and the server's clock.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import operator
import re
import socket
from typing import Any, Iterable, Iterator, NamedTuple, Union

from ..errors import EngineError
from .memcached_conn import CONNECT_TIMEOUT, MemcachedAddress, ServerInfo, open_raw
from .memcached_dump import DumpRun, text_safe

_RECV = 1 << 18
_VA = re.compile(rb"VA (\d+) f(\d+) t(-?\d+) c(\d+)\r\n")
_VA_LINES = re.compile(rb"^VA (\d+) f(\d+) t(-?\d+) c(\d+)$", re.M)
_SIZE, _FLAGS, _TTL, _CAS = (operator.itemgetter(i) for i in range(4))
_END = b"MN\r\n"


class Fetched(NamedTuple):
    """An item as read: ``ttl`` is the remaining lifetime in seconds, -1 for none; ``cas`` as the
    server printed it (only ever compared)."""

    value: bytes
    flags: int
    ttl: int
    cas: bytes


class Columns(NamedTuple):
    """A whole batch in which every key was found with a TTL other than 0, column by column."""

    values: list[bytes]
    flags: list[int]
    ttls: list[int]
    cas: list[bytes]


#: per key: the item (a plain tuple in the order of Fetched's fields), None when it is gone
#: (expired, deleted, evicted), or the server's error text
Result = Union[Fetched, tuple, None, str]


def mg_command(key: bytes) -> bytes:
    if text_safe(key):
        return b"mg %b v f t c\r\n" % key
    return b"mg %b b v f t c\r\n" % base64.b64encode(key)


def mg_commands(run: DumpRun) -> bytes:
    """The pipeline for a batch, closed by ``mn`` (whose ``MN`` marks the end of the replies): one
    join when every key is text-safe (the usual case)."""
    if not run.unsafe:
        return b"mg " + b" v f t c\r\nmg ".join(run.keys) + b" v f t c\r\nmn\r\n"
    return b"".join([mg_command(key) for key in run.keys]) + b"mn\r\n"


def columns(data: bytes, count: int) -> Columns | None:
    """A batch's replies parsed in bulk, or None when they are not all plain hits (misses, errors,
    a TTL of 0) or a value holds CRLF: the caller then parses them one by one.

    Split on CRLF, replies alternate header and value; a value holding CRLF adds pieces, and the
    sizes the headers announce must equal the pieces found, so a value that merely looks like
    replies cannot pass."""
    if not data.endswith(_END):
        return None
    lines = data[:-len(_END)].split(b"\r\n")
    if len(lines) != 2 * count + 1 or lines[-1]:
        return None
    parsed = _VA_LINES.findall(b"\n".join(lines[0::2]))
    values = lines[1::2]
    if len(parsed) != count or b" ".join(map(_SIZE, parsed)) != " ".join(map(str, map(len, values))).encode():
        return None
    ttls = list(map(_TTL, parsed))
    if b"0" in ttls:
        return None
    flags = list(map(_FLAGS, parsed))
    return Columns(values, [0] * count if flags.count(b"0") == count else list(map(int, flags)),
                   [-1] * count if ttls.count(b"-1") == count else list(map(int, ttls)), list(map(_CAS, parsed)))


class _Conn:
    """One pipelined socket with its receive buffer."""

    def __init__(self, address: MemcachedAddress, timeout: float) -> None:
        self.address = address
        self.sock = open_raw(address, timeout)
        # room for a whole batch of requests, so sending never waits for the server to read
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.buf = b""

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise EngineError(f"memcached at {self.address}: sending failed: {exc}") from None

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(_RECV)
        except socket.timeout:
            raise EngineError(f"memcached at {self.address} did not answer in time") from None
        except OSError as exc:
            raise EngineError(f"memcached at {self.address}: reading failed: {exc}") from None
        if not data:
            raise EngineError(f"memcached at {self.address} closed the connection")
        return data

    def _fill(self, buf: bytes, pos: int, need: int) -> bytes:
        """``buf[pos:]`` grown to at least ``need`` bytes (one join however many reads it takes)."""
        parts, have = [buf[pos:]], len(buf) - pos
        while have < need:
            data = self._recv()
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def replies(self, count: int) -> tuple[list[Result], bool]:
        """The next ``count`` mg replies, and whether every one was a hit with a TTL other than 0."""
        out: list[Result] = []
        append = out.append
        clean = True
        buf, pos = self.buf, 0
        match = _VA.match
        while len(out) < count:
            found = match(buf, pos)
            if found is not None:  # the usual reply, in the order the flags were asked for
                size, flags, ttl, cas = found.groups()
                start = found.end()
                stop = start + int(size)
                if len(buf) < stop + 2:
                    buf, pos = self._fill(buf, pos, stop + 2 - pos), 0
                    continue
                if ttl == b"0":
                    clean = False
                append((buf[start:stop], int(flags), int(ttl), cas))
                pos = stop + 2
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                buf, pos = self._fill(buf, pos, len(buf) - pos + 1), 0
                continue
            if buf.startswith(b"VA ", pos):  # flags in another order or others besides
                parts = buf[pos + 3:end].split(b" ")
                start = end + 2
                stop = start + int(parts[0])
                if len(buf) < stop + 2:
                    buf, pos = self._fill(buf, pos, stop + 2 - pos), 0
                    continue
                item = _generic(buf[start:stop], parts[1:])
                clean = clean and item.ttl != 0
                append(item)
                pos = stop + 2
            else:
                line = buf[pos:end]
                pos = end + 2
                append(None if line == b"EN" else line.decode("utf-8", "replace"))
                clean = False
        self.buf = buf[pos:]
        return out, clean

    def batch(self, count: int) -> tuple[list[Result] | None, Columns | None]:
        """The replies to one batch (closed by MN): in bulk when they allow it, else one by one."""
        parts, tail = [self.buf], self.buf[-len(_END):]
        while not tail.endswith(_END):
            data = self._recv()
            parts.append(data)
            tail = (tail + data)[-len(_END):]
        data = b"".join(parts)
        self.buf = b""
        bulk = columns(data, count)
        if bulk is not None:
            return None, bulk
        self.buf = data  # "MN" was the end of a value, or the replies need care: one by one
        out, _ = self.replies(count)
        end = self.buf.find(b"\r\n")
        while end < 0:
            self.buf += self._recv()
            end = self.buf.find(b"\r\n")
        if self.buf[:end] != b"MN":
            raise EngineError(f"memcached at {self.address}: unexpected reply {self.buf[:40]!r} after a batch")
        self.buf = self.buf[end + 2:]
        return out, None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _generic(value: bytes, tokens: list[bytes]) -> Fetched:
    """A VA reply whose flags come in another order or with others besides."""
    flags, ttl, cas = 0, -1, b"0"
    for token in tokens:
        kind = token[:1]
        if kind == b"f":
            flags = int(token[1:])
        elif kind == b"t":
            ttl = int(token[1:])
        elif kind == b"c":
            cas = token[1:]
    return Fetched(value, flags, ttl, cas)


class MetaFetcher:
    """``fetch(batches)`` yields ``(batch, results, columns)`` in order, ``connections`` batches in flight.

    ``columns`` (:class:`Columns`) when every key was found with a TTL other than 0, the usual
    case; else ``results``, one per key: a tuple ``(value, flags, ttl, cas)`` (the fields of
    :class:`Fetched`), None for a key that is gone, or the server's error text for that key.
    """

    def __init__(self, address: MemcachedAddress, connections: int = 2, timeout: float = 30.0) -> None:
        self.address = address
        self.conns: list[_Conn] = []
        try:
            for _ in range(max(1, connections)):
                self.conns.append(_Conn(address, timeout))
        except BaseException:
            self.close()
            raise

    def fetch(self, batches: Iterable[DumpRun]) -> Iterator[tuple[DumpRun, list[Result] | None, Columns | None]]:
        inflight: collections.deque[tuple[_Conn, DumpRun]] = collections.deque()
        free = collections.deque(self.conns)
        for batch in batches:
            if not free:
                conn, done = inflight.popleft()
                yield (done, *conn.batch(len(done)))
                free.append(conn)
            conn = free.popleft()
            conn.send(mg_commands(batch))
            inflight.append((conn, batch))
        while inflight:
            conn, done = inflight.popleft()
            yield (done, *conn.batch(len(done)))

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


class _FlagsSerde:
    """pymemcache hands back the flags only through a serde: keep them next to the bytes."""

    @staticmethod
    def serialize(key: Any, value: Any) -> tuple[Any, int]:
        return value, 0

    @staticmethod
    def deserialize(key: Any, value: bytes, flags: int) -> tuple[bytes, int]:
        return value, flags


class GetsFetcher:
    """The fallback for servers without meta commands: ``gets`` through pymemcache.

    The TTL comes from the dump's absolute ``exp`` minus the server's clock (``STAT time``
    extrapolated); keys the text protocol cannot carry are reported, not skipped in silence.
    """

    def __init__(self, address: MemcachedAddress, info: ServerInfo, timeout: float = 30.0) -> None:
        from pymemcache.client.base import Client

        self.address = address
        self.info = info
        self.client = Client((address.host, address.port), connect_timeout=CONNECT_TIMEOUT, timeout=timeout,
                             serde=_FlagsSerde())
        if address.credentials is not None:
            if not self.client.set(b"auth", address.credentials.token, noreply=False):
                raise EngineError(f"memcached at {address} did not accept the login")

    def fetch(self, batches: Iterable[DumpRun]) -> Iterator[tuple[DumpRun, list[Result] | None, Columns | None]]:
        from pymemcache.exceptions import MemcacheError

        for batch in batches:
            readable = [key for key in batch.keys if text_safe(key)]
            try:
                found = self.client.gets_many(readable) if readable else {}
            except (MemcacheError, OSError) as exc:
                raise EngineError(f"memcached at {self.address}: gets failed: {exc}") from None
            now = self.info.clock()
            results: list[Result] = []
            for key, exp in zip(batch.keys, batch.exps):
                if not text_safe(key):
                    results.append("key cannot be read with gets (meta commands need memcached 1.6.10+)")
                    continue
                hit = found.get(key)
                if hit is None:
                    results.append(None)
                    continue
                (value, flags), cas = hit
                ttl = -1 if exp < 0 else max(int(exp - now), 0)
                results.append((value, flags, ttl, cas if isinstance(cas, bytes) else b"%d" % cas))
            yield batch, results, None

    def close(self) -> None:
        self.client.close()


def open_fetcher(address: MemcachedAddress, info: ServerInfo, method: str = "auto", connections: int = 2,
                 timeout: float = 30.0) -> MetaFetcher | GetsFetcher:
    """Meta ``mg`` on 1.6.10+, ``gets`` before (or when asked for)."""
    if method == "auto":
        method = "meta" if info.meta else "gets"
    if method == "meta":
        if not info.meta:
            raise EngineError(f"meta commands with base64 keys need memcached 1.6.10 or later "
                              f"(this is {info.version_text})")
        return MetaFetcher(address, connections, timeout)
    return GetsFetcher(address, info, timeout)


__all__ = ["Columns", "Fetched", "GetsFetcher", "columns", "MetaFetcher", "Result", "mg_command", "mg_commands", "open_fetcher"]
