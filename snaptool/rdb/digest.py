"""Offline ``DEBUG DIGEST`` and ``DEBUG DIGEST-VALUE``, bit-exact per engine version.

The algorithm is the RDB format reference §8 (redis/valkey ``src/debug.c``):

* ``xor(D, data)``: ``D ^= SHA1(data)``; ``mix(D, data)``: ``D = SHA1(D ^ SHA1(data))``.
* A value's digest (``xorObjectDigest``): ``mix(D, be32(type))`` with the in-memory type
  (string 0, list 1, set 2, zset 3, hash 4, module 5, stream 6), then the body (strings and
  list elements are mixed in order; set members, zset pairs and hash pairs are xored in as
  ``SHA1`` of a per-element sub-digest so their order does not matter; stream entries are
  mixed as ``"<ms>.<seq>"`` followed by their fields and values), then, when the *key* has a
  TTL, ``xor(D, "!!expire!!")``.
* ``DEBUG DIGEST-VALUE key`` is that digest started from 20 zero bytes, without the key name.
  It **does** include the ``"!!expire!!"`` marker of a key with a TTL (checked against live
  Redis 6.2 / 7.0 and Valkey 8.1 by the tests), only the presence of a TTL counts, not its value.
* ``DEBUG DIGEST`` mixes ``be32(db)`` into the running result for every non-empty database in
  ascending order, and xors in ``SHA1(D)`` for every key, where ``D`` starts as
  ``mix(0, key)`` and continues with the value digest above.

Version differences:

* zset scores are printed with ``"%.17g"`` up to Redis 7.0 and with ``fpconv_dtoa`` (Grisu2,
  :mod:`snaptool.rdb.fpconv`) from Redis 7.2 and in every Valkey: ``score_format`` is
  ``"%.17g"`` or ``"fpconv"``.
* Redis 7.4+ xors ``"!!hexpire!!"`` into the sub-digest of every hash field that has a TTL;
  Valkey (9.x hash field expiry) does not: ``hexpire_marker``.

**Modules cannot be digested offline.** A module value contributes the module type id and,
on a live server, whatever the module's digest callback produces; that callback is not
available here, so a ``"module"`` value contributes only the type mix (which is exact only
for module types that have no digest callback).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from hashlib import sha1

from snaptool.rdb.fpconv import fpconv_dtoa

__all__ = [
    "SCORE_FORMATS",
    "DatasetDigest",
    "score_text",
    "string_digest",
    "value_digest",
]

SCORE_FORMATS = ("%.17g", "fpconv")

_TYPE_IDS = {"string": 0, "list": 1, "set": 2, "zset": 3, "hash": 4, "module": 5, "stream": 6}

_ZERO = bytes(20)


def _sha1_int(data: bytes) -> int:
    return int.from_bytes(sha1(data).digest(), "big")


def _mix(d: int, h: int) -> int:
    """``mix`` with ``h`` already hashed: SHA1 of the xor, as an int."""
    return int.from_bytes(sha1((d ^ h).to_bytes(20, "big")).digest(), "big")


# SHA1 of the 4-byte big-endian type ids, and mix(0, be32(type)), the start of any value digest.
_TYPE_HASH = {kind: _sha1_int(t.to_bytes(4, "big")) for kind, t in _TYPE_IDS.items()}
_TYPE_START = {kind: _mix(0, h) for kind, h in _TYPE_HASH.items()}
_EXPIRE_HASH = _sha1_int(b"!!expire!!")
_HEXPIRE_HASH = _sha1_int(b"!!hexpire!!")


def _g17(score: float) -> bytes:
    return b"%.17g" % score


def _fpconv(score: float) -> bytes:
    return fpconv_dtoa(score).encode("ascii")


def _score_formatter(score_format: str) -> Callable[[float], bytes]:
    if score_format == "fpconv":
        return _fpconv
    if score_format == "%.17g":
        return _g17
    raise ValueError(f"unknown score format {score_format!r}, expected one of {SCORE_FORMATS}")


def score_text(score: float, score_format: str) -> bytes:
    """The text a server hashes for a zset score.

    ``score_format`` is ``"%.17g"`` (Redis <= 7.0) or ``"fpconv"`` (Redis >= 7.2, all Valkey).
    """
    return _score_formatter(score_format)(score)


def _unordered(value, kind: str, fmt: Callable[[float], bytes], hexpire_marker: bool) -> int:
    """The xor of the sub-digests of a set, zset or hash (order does not matter). The hashing is
    spelled out inline: this loop runs once per element of every collection."""
    from_bytes, acc = int.from_bytes, 0
    if kind == "set":
        for member in value:
            acc ^= from_bytes(sha1(member).digest(), "big")
        return acc
    zset = kind == "zset"
    for item in value:  # E = mix(mix(0, member), score or value); D ^= SHA1(E)
        first = from_bytes(sha1(sha1(item[0]).digest()).digest(), "big")
        second = from_bytes(sha1(fmt(item[1]) if zset else item[1]).digest(), "big")
        e = sha1((first ^ second).to_bytes(20, "big")).digest()
        if hexpire_marker and len(item) > 2 and item[2] is not None:
            e = (from_bytes(e, "big") ^ _HEXPIRE_HASH).to_bytes(20, "big")
        acc ^= from_bytes(sha1(e).digest(), "big")
    return acc


def _chain(starts: tuple[int, ...], elements: Iterable[bytes]) -> list[int]:
    """Mix every element, in order, into one digest or two (the value's own digest and the key's
    share of the dataset digest), hashing each element once."""
    from_bytes = int.from_bytes
    if len(starts) == 1:
        (a,) = starts
        for element in elements:
            a = from_bytes(sha1((a ^ from_bytes(sha1(element).digest(), "big")).to_bytes(20, "big")).digest(), "big")
        return [a]
    a, b = starts
    for element in elements:
        h = from_bytes(sha1(element).digest(), "big")
        a = from_bytes(sha1((a ^ h).to_bytes(20, "big")).digest(), "big")
        b = from_bytes(sha1((b ^ h).to_bytes(20, "big")).digest(), "big")
    return [a, b]


def _stream_parts(value) -> Iterator[bytes]:
    """What a stream mixes in, in order: each entry's ``"<ms>.<seq>"``, then its fields and values."""
    for entry in value.entries:
        ms, seq = entry.id
        yield b"%d.%d" % (ms, seq)
        for field, val in entry.fields:
            yield field
            yield val


def _body(starts: tuple[int, ...], kind: str, value, has_expire: bool, fmt: Callable[[float], bytes],
          hexpire_marker: bool) -> list[int]:
    """Continue digests ``starts`` (one or two, each already mixed with the type) with the value
    and the TTL marker. Two starts share one pass over the value (the value digest and the key's
    share of the dataset digest differ only in where they start)."""
    if kind == "string":
        h = _sha1_int(value)
        out = [_mix(d, h) for d in starts]
    elif kind in ("list", "stream"):
        out = _chain(starts, value if kind == "list" else _stream_parts(value))
    elif kind in ("set", "zset", "hash"):
        acc = _unordered(value, kind, fmt, hexpire_marker)
        out = [d ^ acc for d in starts]
    elif kind == "module":
        out = list(starts)  # the module's digest callback cannot run offline: see the module docstring
    else:
        raise ValueError(f"unknown value kind {kind!r}")
    return [d ^ _EXPIRE_HASH for d in out] if has_expire else out


def value_digest(kind: str, value, *, has_expire: bool, score_format: str, hexpire_marker: bool) -> bytes:
    """What ``DEBUG DIGEST-VALUE`` returns for one key, as 20 raw bytes (hex-decode the reply).

    ``kind`` and ``value`` follow :mod:`snaptool.rdb.model`; collections may be any iterable
    (they are iterated once). ``has_expire`` is whether the key has a TTL: DIGEST-VALUE includes
    the ``"!!expire!!"`` marker too. ``score_format``: ``"%.17g"`` or ``"fpconv"``;
    ``hexpire_marker``: True for Redis >= 7.4 (hash field TTLs add ``"!!hexpire!!"``).
    """
    start = _TYPE_START.get(kind)
    if start is None:
        raise ValueError(f"unknown value kind {kind!r}")
    (d,) = _body((start,), kind, value, has_expire, _score_formatter(score_format), hexpire_marker)
    return d.to_bytes(20, "big")


def string_digest(value: bytes, has_expire: bool) -> bytes:
    """``value_digest`` of a plain string (the same for every engine version), the common case."""
    d = _mix(_STRING_START, _sha1_int(value))
    return (d ^ _EXPIRE_HASH if has_expire else d).to_bytes(20, "big")


_STRING_START = _TYPE_START["string"]


class DatasetDigest:
    """Accumulates ``DEBUG DIGEST`` over keys fed in any order, databases included.

    The server mixes each non-empty database's number into the running result before xoring in
    that database's keys; key digests are combined by xor, so keeping one xor sum per database
    and folding them in ascending order at the end gives the same result for any feeding order.
    """

    __slots__ = ("_fmt", "_hexpire", "_dbs", "keys")

    def __init__(self, score_format: str, hexpire_marker: bool) -> None:
        self._fmt = _score_formatter(score_format)
        self._hexpire = bool(hexpire_marker)
        self._dbs: dict[int, int] = {}  # db -> xor of SHA1(D) over its keys
        self.keys = 0

    def add(self, db: int, key: bytes, kind: str, value, *, has_expire: bool) -> bytes:
        """Fold in one key of database ``db``; returns its ``DEBUG DIGEST-VALUE`` (20 raw bytes),
        computed in the same pass over the value."""
        type_hash = _TYPE_HASH.get(kind)
        if type_hash is None:
            raise ValueError(f"unknown value kind {kind!r}")
        if db < 0:
            raise ValueError(f"bad database number {db}")
        # D = mix(mix(0, key), be32(type)), then the value.
        start = _mix(_sha1_int(sha1(key).digest()), type_hash)
        d, alone = _body((start, _TYPE_START[kind]), kind, value, has_expire, self._fmt, self._hexpire)
        self._dbs[db] = self._dbs.get(db, 0) ^ _sha1_int(d.to_bytes(20, "big"))
        self.keys += 1
        return alone.to_bytes(20, "big")

    def digest(self) -> bytes:
        """The 20 raw bytes (all zero for an empty dataset)."""
        final = 0
        for db in sorted(self._dbs):
            # final = mix(final, be32(db)), then xor in the database's keys
            final = _mix(final, _sha1_int(db.to_bytes(4, "big"))) ^ self._dbs[db]
        return final.to_bytes(20, "big")

    def hexdigest(self) -> str:
        """What ``DEBUG DIGEST`` replies: 40 lowercase hex digits."""
        return self.digest().hex()
