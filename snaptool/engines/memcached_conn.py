"""Where a memcached server is, how to log in, and what it can do: the probe every migration starts with.

memcached's features for listing and reading keys arrived release by release (``lru_crawler
metadump`` 1.4.31, its END line 1.5.4, the ``hash`` walk 1.6.9, meta ``mg`` with base64 keys
1.6.10, ``flags=`` in dumps 1.6.24), and a server can switch enumeration off (``-X``, ``-o
no_lru_crawler``) or speak only the binary protocol (SASL). :func:`probe` reads ``version``,
``stats settings`` and ``stats`` once, in one write, so the rest of the job chooses its methods
from facts instead of trying commands and parsing their errors; a server that hangs up on them or
answers them with errors is refused there, with the likely reasons and the dual-write advice.

ASCII authentication (``-Y``) is a fake ``set`` whose value is ``user password``; it must be sent on
every new connection, which :func:`open_raw` does for every socket (the probe, the dumps, the
meta pipelines).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

from ..errors import EngineError, SnaptoolError

DEFAULT_PORT = 11211
CONNECT_TIMEOUT = 5.0

_DUAL_WRITE = ("migrate by dual-write instead: have the application write to both memcached and Redis, "
               "read through Redis with memcached as the fallback, and let the old keys expire")


class MemcachedInputError(SnaptoolError):
    """A malformed --from address or auth file (bad input, exit 2)."""

    exit_code = 2


class CannotEnumerate(EngineError):
    """The server cannot list its keys (crawler off, dumps disabled, too old, binary-only)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"memcached at {where}: {reason}, so its keys cannot be listed; {_DUAL_WRITE}")
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    """One user of an ASCII auth file (``memcached -Y``): never printed."""

    username: str
    password: str = field(repr=False)

    @property
    def token(self) -> bytes:
        return f"{self.username} {self.password}".encode()


def read_auth_file(path: str) -> Credentials:
    """The first ``user:password`` line of a file in memcached's ``-Y`` format."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise MemcachedInputError(f"auth file {path}: {exc.strerror or exc}") from None
    if not lines or ":" not in lines[0]:
        raise MemcachedInputError(f"auth file {path}: expected a line user:password (the format of memcached -Y)")
    user, _, password = lines[0].partition(":")
    if not user or " " in user or " " in password:
        raise MemcachedInputError(f"auth file {path}: user and password may not be empty or contain spaces")
    return Credentials(user, password)


@dataclass(frozen=True)
class MemcachedAddress:
    """One memcached server; ``str()`` is ``host:port`` (credentials are never shown)."""

    host: str
    port: int = DEFAULT_PORT
    credentials: Credentials | None = None

    @classmethod
    def parse(cls, text: str, credentials: Credentials | None = None) -> MemcachedAddress:
        """``host``, ``host:port``, ``[v6]:port`` or ``memcached://host:port``."""
        url = text if "://" in text else f"memcached://{text}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise MemcachedInputError(f"invalid memcached address {text!r}: {exc}") from None
        if parts.scheme != "memcached" or not parts.hostname or parts.path.strip("/"):
            raise MemcachedInputError(f"invalid memcached address {text!r}: expected host:port")
        return cls(parts.hostname, port or DEFAULT_PORT, credentials)

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.endpoint


@dataclass
class ServerInfo:
    """What ``version``, ``stats settings`` and ``stats`` said (values as text)."""

    version_text: str
    settings: dict[str, str]
    stats: dict[str, str]
    clock_at: float = 0.0  # time.monotonic() when ``stats`` was read

    @property
    def version(self) -> tuple[int, int, int]:
        parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in self.version_text.split(".")[:3]]
        return tuple((parts + [0, 0, 0])[:3])  # type: ignore[return-value]

    @property
    def name(self) -> str:
        return f"memcached-{self.version_text}"

    @property
    def metadump(self) -> bool:
        return self.version >= (1, 4, 31)

    @property
    def metadump_hash(self) -> bool:
        """The hash-table walk, which does not miss items the LRU moves (1.6.9+)."""
        return self.version >= (1, 6, 9)

    @property
    def mgdump(self) -> bool:
        """``lru_crawler mgdump``: keys only (1.6.19+)."""
        return self.version >= (1, 6, 19)

    @property
    def metadump_end(self) -> bool:
        """Dumps end with an END line from 1.5.4; before, the end is a silence."""
        return self.version >= (1, 5, 4)

    @property
    def meta(self) -> bool:
        """Meta commands with base64 keys and today's reply codes (1.6.10+)."""
        return self.version >= (1, 6, 10)

    @property
    def crawler(self) -> bool:
        return self.settings.get("lru_crawler", "yes") != "no"

    @property
    def dump_enabled(self) -> bool:
        return self.settings.get("dump_enabled", "yes") != "no"

    @property
    def binary_only(self) -> bool:
        return self.settings.get("binding_protocol") == "binary" or self.settings.get("auth_enabled_sasl") == "yes"

    @property
    def time(self) -> int:
        """The server's clock (``STAT time``) when the stats were read: exp values count on it."""
        return int(self.stats.get("time", 0))

    def clock(self) -> float:
        """The server's clock now, extrapolated from ``STAT time`` with our monotonic clock."""
        return self.time + (time.monotonic() - self.clock_at)

    @property
    def items(self) -> int:
        return int(self.stats.get("curr_items", 0))

    def require_enumerable(self, where: str) -> None:
        """Refuse, with the reason and the dual-write advice, a server whose keys cannot be listed."""
        if self.binary_only:
            raise CannotEnumerate(where, "it speaks only the binary protocol (SASL), which has no command "
                                         "to list keys")
        if not self.metadump:
            raise CannotEnumerate(where, f"version {self.version_text} predates lru_crawler metadump (1.4.31)")
        if not self.crawler:
            raise CannotEnumerate(where, "its LRU crawler is disabled (-o no_lru_crawler)")
        if not self.dump_enabled:
            raise CannotEnumerate(where, "dumping keys is disabled on it (-X)")


#: the probe's three commands in one write: 32 bytes, so a server that speaks only the binary
#: protocol reads a 24-byte header from them, finds no binary magic and hangs up at once
_PROBE = b"version\r\nstats settings\r\nstats\r\n"
_BINARY_ONLY = ("it speaks only the binary protocol, which has no command to list keys (memcached with SASL, -S, "
                "or -B binary), or it is not memcached")


def probe(address: MemcachedAddress, timeout: float = 30.0) -> ServerInfo:
    """Version, settings and stats of a server, logging in first when credentials are given.

    A server that hangs up on the text commands, or answers them with an error, cannot be listed:
    it is refused with the likely reasons and the dual-write advice."""
    sock = open_raw(address, timeout)
    replies = sock.makefile("rb")
    try:
        sock.sendall(_PROBE)
        version = _reply(replies, address, "version")
        if not version.startswith(b"VERSION "):
            raise _rejected(address, "version", version)
        settings = _stats(replies, address, "stats settings")
        stats = _stats(replies, address, "stats")
        clock_at = time.monotonic()
    except socket.timeout:
        raise EngineError(f"memcached at {address} did not answer version within {timeout:g}s") from None
    except OSError as exc:
        raise CannotEnumerate(str(address), f"{_BINARY_ONLY} ({exc.strerror or exc} on the text command "
                                            "version)") from None
    finally:
        replies.close()
        sock.close()
    return ServerInfo(version[8:].decode("utf-8", "replace"), settings, stats, clock_at)


def _reply(replies: BinaryIO, address: MemcachedAddress, command: str) -> bytes:
    line = replies.readline(4096)
    if not line.endswith(b"\r\n"):
        raise CannotEnumerate(str(address), f"{_BINARY_ONLY} (it closed the connection on the text command "
                                            f"{command})")
    return line[:-2]


def _stats(replies: BinaryIO, address: MemcachedAddress, command: str) -> dict[str, str]:
    """The ``STAT name value`` lines of one stats reply, values as text."""
    out: dict[str, str] = {}
    while (line := _reply(replies, address, command)) != b"END":
        name, sep, value = line.removeprefix(b"STAT ").partition(b" ")
        if not line.startswith(b"STAT ") or not sep:
            raise _rejected(address, command, line)
        out[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


def _rejected(address: MemcachedAddress, command: str, reply: bytes) -> EngineError:
    """A probe command answered with something else than its reply."""
    text = reply.decode("utf-8", "replace").strip()
    if "unauthenticated" in text or "authentication failure" in text:
        return _refusal(address, text)
    return CannotEnumerate(str(address), f"it answered {command} with {text[:80]!r}: a managed service that blocks "
                                         "it (ElastiCache Serverless rejects stats settings), or not memcached")


def _refusal(address: MemcachedAddress, message: str) -> EngineError:
    if "unauthenticated" in message:
        return EngineError(f"memcached at {address} requires a login (memcached -Y): pass --auth-file")
    if "authentication failure" in message:
        return EngineError(f"memcached at {address} refused the login from the auth file")
    return EngineError(f"memcached at {address} refused: {message.strip()}")


# --------------------------------------------------------------------------- raw sockets

def open_raw(address: MemcachedAddress, timeout: float) -> socket.socket:
    """A connected, logged-in socket (the probe, dumps, meta pipelines)."""
    try:
        sock = socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise EngineError(f"cannot reach memcached at {address}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    if address.credentials is not None:
        token = address.credentials.token
        try:
            sock.sendall(b"set auth 0 0 %d\r\n%b\r\n" % (len(token), token))
            reply = read_line(sock)
        except socket.timeout:
            sock.close()
            raise EngineError(f"memcached at {address} did not answer the login within {timeout:g}s") from None
        except OSError as exc:  # the login is a text command: a binary-only server hangs up on it
            sock.close()
            raise CannotEnumerate(str(address), f"{_BINARY_ONLY} ({exc} on the login)") from None
        if reply != b"STORED":
            sock.close()
            raise _refusal(address, reply.decode("utf-8", "replace"))
    return sock


def read_line(sock: socket.socket, limit: int = 4096) -> bytes:
    """One reply line without its CRLF (for the short exchanges of a login); byte by byte, as
    nothing may be read past it."""
    out = bytearray()
    while not out.endswith(b"\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise OSError("the server closed the connection")
        out += byte
        if len(out) > limit:
            raise OSError("reply line too long")
    return bytes(out[:-2])


__all__ = ["CannotEnumerate", "Credentials", "DEFAULT_PORT", "MemcachedAddress", "MemcachedInputError",
           "ServerInfo", "open_raw", "probe", "read_auth_file", "read_line"]
