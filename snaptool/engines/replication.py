"""Take an RDB snapshot from a live node over the replication protocol, as ``redis-cli --rdb`` does.

The node is asked for a full resynchronisation (``PSYNC ? -1``, or ``SYNC`` on engines without
PSYNC) and sends its snapshot as one bulk payload: ``$<len>`` when it saves to disk first, or
``$EOF:<40-byte mark>`` followed by the data and the mark again when it streams straight from the
fork (``repl-diskless-sync yes``). :class:`RdbStream` hands out only the RDB bytes, in chunks as
they arrive, so a snapshot of any size goes to a file, an uploader or the RDB reader without ever
being held in memory whole.

Nothing here needs write access to the node or its file system: an ACL user with
``+psync +replconf`` is enough (``+sync +replconf`` also works, through the SYNC fallback).
"""

from __future__ import annotations

import io
import socket
import ssl
import time
from dataclasses import dataclass

from ..errors import EngineError
from .address import CONNECT_TIMEOUT, NodeAddress
from .resp import encode

#: Bytes asked from the socket per receive: large, so a fast link costs few system calls.
RECV_SIZE = 1 << 20
#: The end mark of a diskless transfer (``$EOF:<mark>``) is 40 bytes of random hex.
MARK_LEN = 40
#: A handshake reply longer than this is not from a Redis-compatible node.
_MAX_LINE = 64 * 1024


@dataclass
class TransferInfo:
    """How the node sent the snapshot; goes into backup manifests and progress messages."""

    mode: str  # "disk" ($<len> bulk) or "diskless" ($EOF:<mark>)
    size: int | None  # announced size of a disk-based transfer; None when diskless
    replid: str | None  # from +FULLRESYNC; None after SYNC
    offset: int | None  # replication offset the snapshot corresponds to
    waited: float  # seconds from the sync request to the payload header (fork, BGSAVE, delay)


class _Connection:
    """A socket plus what was received beyond the last line read (the payload's first bytes)."""

    def __init__(self, sock: socket.socket, address: NodeAddress, timeout: float) -> None:
        self.sock = sock
        self.address = address
        self.timeout = timeout
        self.pending = bytearray()

    def send(self, *args: str | bytes) -> None:
        try:
            self.sock.sendall(encode(*args))
        except TimeoutError:
            raise EngineError(f"no progress sending to {self.address.redacted()} for "
                              f"{self.timeout:g}s") from None
        except OSError as exc:
            raise EngineError(f"connection to {self.address.redacted()} failed: "
                              f"{exc.strerror or exc}") from None

    def recv_into(self, view: memoryview) -> int:
        """Receive into ``view``; 0 when the node closed the connection. Times out per call."""
        try:
            return self.sock.recv_into(view)
        except TimeoutError:
            raise EngineError(f"no data from {self.address.redacted()} for {self.timeout:g}s") from None
        except (ConnectionResetError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0  # a killed node often resets: report it as a close, with the byte count
        except OSError as exc:
            raise EngineError(f"connection to {self.address.redacted()} failed: "
                              f"{exc.strerror or exc}") from None

    def read_line(self, what: str) -> bytes:
        """The next non-empty line without CRLF. Bare newlines (the keep-alives a node sends
        while it forks and saves) are skipped."""
        chunk = bytearray(4096)
        view = memoryview(chunk)
        while True:
            end = self.pending.find(b"\n")
            if end >= 0:
                line = bytes(self.pending[:end]).rstrip(b"\r")
                del self.pending[:end + 1]
                if line:
                    return line
                continue
            if len(self.pending) > _MAX_LINE:
                raise EngineError(f"{self.address.redacted()} sent an over-long reply to {what}: "
                                  "not a Redis-compatible node?")
            n = self.recv_into(view)
            if n == 0:
                raise EngineError(f"{self.address.redacted()} closed the connection while waiting "
                                  f"for the reply to {what}")
            self.pending += view[:n]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _reply_text(line: bytes) -> str:
    return line.decode("utf-8", "replace").strip()


def _error_of(line: bytes) -> str | None:
    """The error text of a ``-ERR ...`` line, else None."""
    return _reply_text(line[1:]) if line.startswith(b"-") else None


class RdbStream(io.RawIOBase):
    """The RDB bytes of one snapshot as a readable, non-seekable binary stream.

    ``read(n)`` returns up to ``n`` bytes as they arrive (possibly fewer) and ``b""`` at the end;
    the end mark of a diskless transfer is never part of the data. A connection lost before the
    end raises EngineError rather than looking like a short file. ``close()`` closes the socket.
    """

    def __init__(self, conn: _Connection, info: TransferInfo, mark: bytes | None = None) -> None:
        super().__init__()
        self._conn = conn
        self.info = info
        self.bytes_read = 0
        self._mark = mark
        self._remaining = info.size  # disk-based: payload bytes still to come
        self._buf = bytearray(RECV_SIZE + MARK_LEN)
        self._view = memoryview(self._buf)
        self._start = 0  # unread data is self._buf[_start:_end]
        self._end = 0
        self._done = False
        self._leftover = bytes(conn.pending)  # payload bytes received with the header line
        conn.pending.clear()

    # ------------------------------------------------------------------ io.RawIOBase
    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001 - any writable buffer
        out = memoryview(b).cast("B")
        chunk = self._next(len(out))
        n = len(chunk)
        out[:n] = chunk
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return bytes(self._next(size))

    def readall(self) -> bytes:
        parts = []
        while chunk := self._next(RECV_SIZE):
            parts.append(bytes(chunk))
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._conn.close()
            self._view, self._buf, self._leftover = memoryview(b""), bytearray(), b""  # free 1 MiB now
        super().close()

    @property
    def address(self) -> NodeAddress:
        return self._conn.address

    # ------------------------------------------------------------------ transfer
    def _fill(self, room: int) -> int:
        """Receive at most ``room`` bytes at ``_end`` (leftover header bytes first)."""
        if self._leftover:
            n = min(room, len(self._leftover))
            self._buf[self._end:self._end + n] = self._leftover[:n]
            self._leftover = self._leftover[n:]
            return n
        return self._conn.recv_into(self._view[self._end:self._end + room])

    def _next(self, size: int) -> memoryview:
        """A view of the next at most ``size`` payload bytes (valid until the next call)."""
        self._check_open()
        if size == 0:
            return self._view[:0]
        if self._mark is None:
            return self._next_sized(size)
        return self._next_marked(size)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed RdbStream")

    def _next_sized(self, size: int) -> memoryview:
        assert self._remaining is not None and self.info.size is not None
        if self._remaining == 0:
            return self._view[:0]
        self._end = 0
        n = self._fill(min(size, self._remaining, RECV_SIZE))
        if n == 0:
            raise EngineError(f"{self.address.redacted()} closed the connection after "
                              f"{self.bytes_read} of {self.info.size} bytes")
        self._remaining -= n
        self.bytes_read += n
        return self._view[:n]

    def _next_marked(self, size: int) -> memoryview:
        """Diskless: keep the last MARK_LEN bytes back until it is known they are not the mark."""
        while True:
            ready = self._end - self._start - (0 if self._done else MARK_LEN)
            if ready > 0:
                n = min(size, ready)
                chunk = self._view[self._start:self._start + n]
                self._start += n
                self.bytes_read += n
                return chunk
            if self._done:
                return self._view[:0]
            # at most MARK_LEN unread bytes: move them to the front and receive after them
            held = self._end - self._start
            self._buf[:held] = self._buf[self._start:self._end]
            self._start, self._end = 0, held
            n = self._fill(RECV_SIZE)
            if n == 0:
                raise EngineError(f"{self.address.redacted()} closed the connection after "
                                  f"{self.bytes_read + held} bytes, before the end mark")
            self._end += n
            if self._end >= MARK_LEN and self._buf[self._end - MARK_LEN:self._end] == self._mark:
                self._end -= MARK_LEN  # the payload ends where the mark starts
                self._done = True


def _handshake(conn: _Connection, diskless: bool) -> None:
    """AUTH and REPLCONF: log in and tell the node what kind of replica this is."""
    address = conn.address
    if address.password is not None:
        login = (address.username, address.password) if address.username else (address.password,)
        conn.send("AUTH", *login)
        error = _error_of(conn.read_line("AUTH"))
        if error is not None:
            raise EngineError(f"authentication to {address.redacted()} failed: {error}")
    capa = ("capa", "eof", "capa", "psync2") if diskless else ("capa", "psync2")
    conn.send("REPLCONF", *capa)
    error = _error_of(conn.read_line("REPLCONF"))
    if error is not None:
        raise _refusal(address, "REPLCONF", error)
    # Redis 7.0+ / Valkey: the node drops this replica once the snapshot is sent instead of
    # streaming its write traffic afterwards. Older engines do not know the option: harmless.
    conn.send("REPLCONF", "rdb-only", "1")
    error = _error_of(conn.read_line("REPLCONF"))
    if error is not None and error.startswith(("NOAUTH", "NOPERM")):
        raise _refusal(address, "REPLCONF", error)


def _refusal(address: NodeAddress, what: str, error: str) -> EngineError:
    """One-line error for an error reply, with a hint for the login problems."""
    if error.startswith("NOAUTH"):
        return EngineError(f"authentication to {address.redacted()} failed: {error} (no password given?)")
    hint = " (a backup user needs +psync +replconf)" if error.startswith("NOPERM") else ""
    return EngineError(f"{address.redacted()} refused {what}: {error}{hint}")


def _request_sync(conn: _Connection) -> tuple[str | None, int | None]:
    """PSYNC ? -1 (a full resync from scratch); SYNC when PSYNC is unknown or not allowed.
    Returns the replication id and offset (None, None after SYNC)."""
    address = conn.address
    conn.send("PSYNC", "?", "-1")
    line = conn.read_line("PSYNC")
    error = _error_of(line)
    if error is None:
        parts = _reply_text(line).split()
        if len(parts) == 3 and parts[0] == "+FULLRESYNC" and parts[2].lstrip("-").isdigit():
            return parts[1], int(parts[2])
        raise EngineError(f"{address.redacted()} answered PSYNC with {_reply_text(line)[:100]!r}, "
                          "not +FULLRESYNC <replid> <offset>")
    if not error.startswith(("ERR unknown command", "NOPERM")):
        raise _refusal(address, "PSYNC", error)
    conn.send("SYNC")
    return None, None


def _read_payload_header(conn: _Connection, what: str) -> tuple[int | None, bytes | None]:
    """After the sync request: skip keep-alives, return (size, None) or (None, end mark)."""
    address = conn.address
    line = conn.read_line(what)
    error = _error_of(line)
    if error is not None:
        if error.startswith(("NOAUTH", "NOPERM")):
            raise _refusal(address, what, error)
        raise EngineError(f"{address.redacted()} did not send a snapshot: {error}")
    if line.startswith(b"$EOF:"):
        mark = line[5:]
        if len(mark) != MARK_LEN:
            raise EngineError(f"{address.redacted()} sent an end mark of {len(mark)} bytes, "
                              f"expected {MARK_LEN}")
        return None, mark
    if line.startswith(b"$") and line[1:].isdigit():
        return int(line[1:]), None
    raise EngineError(f"{address.redacted()} sent {_reply_text(line)[:100]!r} instead of a snapshot")


def open_rdb_stream(address: NodeAddress, *, timeout: float = 60.0,
                    connect_timeout: float = CONNECT_TIMEOUT, diskless: bool = True) -> RdbStream:
    """Ask ``address`` for a full resync and return its snapshot as a stream.

    ``timeout`` is the longest the node may stay silent (it sends a keep-alive every second while
    it saves, so this only trips on a hung node or link). ``diskless=False`` does not announce
    ``capa eof``, so the node saves to disk and announces the size first even when it is set up
    for diskless sync. Raises EngineError naming the node for every failure.
    """
    sock = address.connect(connect_timeout)
    conn = _Connection(sock, address, timeout)
    try:
        sock.settimeout(timeout)
        _handshake(conn, diskless)
        started = time.monotonic()
        replid, offset = _request_sync(conn)
        size, mark = _read_payload_header(conn, "PSYNC" if replid is not None else "SYNC")
        info = TransferInfo(mode="disk" if mark is None else "diskless", size=size, replid=replid,
                            offset=offset, waited=time.monotonic() - started)
        return RdbStream(conn, info, mark)
    except BaseException:
        conn.close()
        raise


__all__ = ["MARK_LEN", "RECV_SIZE", "RdbStream", "TransferInfo", "open_rdb_stream"]
