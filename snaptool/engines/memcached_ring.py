"""Which server of a client-side sharded memcached pool the clients read a key from.

memcached servers do not know about each other: the clients hash each key onto one server. After
the pool changed, a key can sit on two servers with different values, and the copy that counts is
the one the *current* clients' hash maps the key to (cas values cannot be compared across
servers). A :class:`Ring` recomputes that mapping from a description, ``KIND[:W1,W2,…]``, the
weights in ``--from`` order (default 1 each):

- ``ketama``: libmemcached's weighted ketama (``MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED``: pylibmc
  with ``behaviors={"ketama_weighted": True}``, PHP memcached with ``OPT_LIBKETAMA_COMPATIBLE``, uhashring).
  A server gets ``floor(40 * servers * weight / total) * 4`` points, four from each MD5 digest of
  ``"host-N"`` (port 11211) or ``"host:port-N"`` (libmemcached leaves the default port out), each
  point being 4 digest bytes read little-endian; a key goes to the first point at or after the
  first 4 bytes of its own MD5, wrapping round.
- ``modula``: python-memcached's: ``(crc32(key) >> 16) & 0x7fff`` modulo the servers, each server
  repeated ``weight`` times in ``--from`` order.

The host is taken as ``--from`` spells it, so it must be spelled as in the clients' server list.
"""

from __future__ import annotations

import bisect
import hashlib
import zlib
from dataclasses import dataclass

from .memcached_conn import DEFAULT_PORT, MemcachedAddress, MemcachedInputError

KINDS = ("ketama", "modula")
_KETAMA_POINTS = 40  # MD5 digests per server of average weight (160 points, 4 per digest)


#: The largest server weight taken: rings build points (ketama) or buckets (modula) per unit of weight.
MAX_WEIGHT = 1000


@dataclass(frozen=True)
class Ring:
    """A parsed ``--ring`` description, bound to the servers by :meth:`bind`."""

    kind: str
    weights: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Ring:
        kind, sep, rest = text.strip().partition(":")
        if kind not in KINDS:
            raise MemcachedInputError(f"--ring {text!r}: expected {' or '.join(KINDS)}, optionally followed by "
                                      ":W1,W2,… (a weight per --from server)")
        if not sep:
            return cls(kind)
        try:
            weights = tuple(int(w) for w in rest.split(","))
        except ValueError:
            weights = ()
        if not weights or min(weights) < 1 or max(weights) > MAX_WEIGHT:
            raise MemcachedInputError(f"--ring {text!r}: weights must be integers from 1 to {MAX_WEIGHT}, one per "
                                      "--from server")
        return cls(kind, weights)

    def __str__(self) -> str:
        return self.kind + (":" + ",".join(map(str, self.weights)) if self.weights else "")

    def bind(self, addresses: list[MemcachedAddress]) -> BoundRing:
        weights = self.weights or (1,) * len(addresses)
        if len(weights) != len(addresses):
            raise MemcachedInputError(f"--ring {self}: {len(weights)} weight(s) for {len(addresses)} --from server(s)")
        return BoundRing(self, addresses, weights)


class BoundRing:
    """``server(key)``: the index (in ``--from`` order) of the server the clients read ``key`` from."""

    def __init__(self, ring: Ring, addresses: list[MemcachedAddress], weights: tuple[int, ...]) -> None:
        self.ring = ring
        if ring.kind == "modula":
            self.buckets = [index for index, weight in enumerate(weights) for _ in range(weight)]
            return
        total, count = sum(weights), len(addresses)
        points: list[tuple[int, int]] = []
        for index, (address, weight) in enumerate(zip(addresses, weights)):
            name = address.host if address.port == DEFAULT_PORT else f"{address.host}:{address.port}"
            for n in range(_KETAMA_POINTS * count * weight // total):
                digest = hashlib.md5(f"{name}-{n}".encode()).digest()
                points += [(int.from_bytes(digest[at:at + 4], "little"), index) for at in (0, 4, 8, 12)]
        points.sort()
        self.points = [value for value, _ in points]
        self.owners = [index for _, index in points]

    def server(self, key: bytes) -> int:
        if self.ring.kind == "modula":
            return self.buckets[((zlib.crc32(key) >> 16) & 0x7FFF) % len(self.buckets)]
        at = bisect.bisect_left(self.points, int.from_bytes(hashlib.md5(key).digest()[:4], "little"))
        return self.owners[at if at < len(self.points) else 0]


__all__ = ["BoundRing", "KINDS", "Ring"]
