"""RESP over a raw socket, for jobs that send many small commands to one node.

redis-py spends more time packing a command and parsing its reply than a node spends answering a
small one, so bulk jobs (restore loads, key-by-key validation) speak RESP themselves: commands are
encoded into one buffer and sent at once, and a batch whose replies the job can predict is
confirmed with one comparison of bytes (:meth:`RespConnection.matches`); only a batch that differs
is parsed reply by reply (:meth:`RespConnection.replies`). Error replies come back as
``redis.ResponseError`` values, as from a redis-py pipeline run with ``raise_on_error=False``.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Iterable

import redis

from ..errors import EngineError
from .address import NodeAddress

_RECV = 1 << 16
_CRLF = b"\r\n"


class ConnectionLost(EngineError):
    """The node closed the connection, stopped answering or sent something that is not RESP;
    ``why`` is that reason alone, for callers that word the error their own way."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _arg(value: Any) -> bytes:
    """One argument as redis-py would send it (bytes as they are, text as UTF-8, numbers as text)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    raise TypeError(f"cannot send a {type(value).__name__} as a command argument")


def reply_text(value: Any) -> str:
    """A reply (bytes from raw RESP or redis-py without decoding) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def bulk(data: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def encode(*args: Any) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        data = value if type(value) is bytes else _arg(value)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def encode_all(commands: Iterable[tuple[Any, ...]]) -> bytes:
    """Several commands, to be sent in one write."""
    return b"".join(encode(*command) for command in commands)


class RespConnection:
    """One raw connection to a node (AUTH and SELECT done), speaking RESP2.

    Replies are read from an internal buffer, so a batch's replies may be confirmed in one
    comparison (:meth:`matches`) and, when that fails, parsed one by one from the same bytes.
    """

    def __init__(self, address: NodeAddress, db: int = 0, timeout: float = 60.0,
                 send_buffer: int | None = None) -> None:
        """``send_buffer``: a socket send buffer large enough for a whole batch, so that sending
        one never waits for the node to read it (jobs that build the next batch meanwhile)."""
        self.address = address
        self.name = address.redacted()
        self.timeout = timeout
        self._buf = b""
        self._pos = 0
        self._sock = address.connect(timeout=min(timeout, 10.0))
        self._sock.settimeout(timeout)
        if send_buffer:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        try:
            self._hello(address, db)
        except BaseException:
            self.close()
            raise

    def _hello(self, address: NodeAddress, db: int) -> None:
        """AUTH and SELECT in one round trip; a refusal names what failed."""
        commands: list[tuple[Any, ...]] = []
        if address.password is not None:
            commands.append(("AUTH", address.username, address.password) if address.username
                            else ("AUTH", address.password))
        if db:
            commands.append(("SELECT", db))
        if not commands:
            return
        self.send(encode_all(commands))
        for command, reply in zip(commands, self.replies(len(commands))):
            if isinstance(reply, redis.ResponseError):
                what = f"authentication to {self.name}" if command[0] == "AUTH" else f"SELECT {db} on {self.name}"
                raise EngineError(f"{what} failed: {reply}")

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ I/O

    def lost(self, why: str) -> ConnectionLost:
        return ConnectionLost(f"lost the connection to {self.name} ({why})", why)

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise self.lost(f"no progress sending for {self.timeout:g}s") from None
        except OSError as exc:
            said = self._parting_error()
            raise self.lost(f"the server said: {said}" if said else exc.strerror or str(exc)) from None

    def _parting_error(self) -> str | None:
        """The error a server sent before closing on us (e.g. a bulk over proto-max-bulk-len)."""
        try:
            self._sock.settimeout(1.0)
            data = self._buf[self._pos:] + self._sock.recv(_RECV)
        except OSError:
            return None
        for line in data.split(_CRLF):
            if line.startswith(b"-"):
                return line[1:].decode("utf-8", "replace").strip()
        return None

    def _recv(self) -> bytes:
        try:
            data = self._sock.recv(_RECV)
        except socket.timeout:
            raise self.lost(f"no reply within {self.timeout:g}s") from None
        except OSError as exc:
            raise self.lost(exc.strerror or str(exc)) from None
        if not data:
            raise self.lost("closed by the server")
        return data

    def _fill(self, size: int) -> None:
        """Make at least ``size`` unread bytes available in the buffer."""
        have = len(self._buf) - self._pos
        if have >= size:
            return
        parts = [self._buf[self._pos:]]
        while have < size:
            chunk = self._recv()
            parts.append(chunk)
            have += len(chunk)
        self._buf, self._pos = b"".join(parts), 0

    def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies (errors as values)."""
        self.send(encode_all(commands))
        return self.replies(len(commands))

    # ------------------------------------------------------------------ replies

    def matches(self, expected: bytes) -> bool:
        """Whether the next replies are exactly ``expected`` (a whole number of replies): consumed
        when they are, left unread when they are not (to be parsed then). Replies are
        self-delimiting, so equal bytes mean equal replies, however the stream is cut."""
        size, buf, pos = len(expected), self._buf, self._pos
        at = min(len(buf) - pos, size)
        if not expected.startswith(buf[pos:pos + at]):
            return False
        if at == size:
            self._pos = pos + size
            return True
        parts = [buf[pos:]]  # kept, to be parsed should a later chunk differ
        while True:
            chunk = self._recv()
            parts.append(chunk)
            take = min(len(chunk), size - at)
            if not expected.startswith(chunk if take == len(chunk) else chunk[:take], at):
                self._buf, self._pos = b"".join(parts), 0
                return False
            at += take
            if at == size:
                self._buf, self._pos = chunk[take:], 0
                return True

    def replies(self, count: int) -> list[Any]:
        """The next ``count`` replies, parsed."""
        return [self.reply() for _ in range(count)]

    def integers(self, count: int) -> list[Any]:
        """The next ``count`` replies, parsed in one go when they are all integers (a batch of
        PTTLs, the usual case), else one by one."""
        while True:
            rest = self._buf[self._pos:]
            lines = rest.split(_CRLF, count)
            if len(lines) > count:  # every reply is at least one line
                break
            self._buf, self._pos = rest + self._recv(), 0
        head = lines[:count]
        if all(line[:1] == b":" for line in head):
            try:
                numbers = [int(line[1:]) for line in head]
            except ValueError:  # not RESP: parsed one by one below, which names the line
                pass
            else:
                self._buf, self._pos = lines[count], 0
                return numbers
        self._buf, self._pos = rest, 0
        return self.replies(count)

    def reply(self) -> Any:
        """The next reply: bytes, int, None, a list, or a ``redis.ResponseError`` for an error."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            size = self._number(rest, line)
            if size < 0:
                return None
            self._fill(size + 2)
            start = self._pos
            self._pos = start + size + 2
            return self._buf[start:start + size]
        if kind == b":":
            return self._number(rest, line)
        if kind == b"*":
            size = self._number(rest, line)
            return None if size < 0 else [self.reply() for _ in range(size)]
        if kind == b"+":
            return rest
        if kind == b"-":
            return redis.ResponseError(rest.decode("utf-8", "replace"))
        raise self.lost(f"not a RESP reply: {line[:40]!r}")

    def _number(self, text: bytes, line: bytes) -> int:
        try:
            return int(text)
        except ValueError:
            raise self.lost(f"not a RESP reply: {line[:40]!r}") from None

    def _line(self) -> bytes:
        start = self._pos
        end = self._buf.find(_CRLF, start)
        while end < 0:
            searched = len(self._buf) - self._pos
            self._buf = self._buf[self._pos:] + self._recv()
            self._pos = start = 0
            end = self._buf.find(_CRLF, max(0, searched - 1))
        self._pos = end + 2
        return self._buf[start:end]


__all__ = ["ConnectionLost", "RespConnection", "bulk", "encode", "encode_all", "reply_text"]
