"""A tight loop over runs of simple records, for jobs that copy or count records without decoding.

Most of a real snapshot is small keys whose value is one string or a short count-prefixed
structure. Walking them one :class:`~snaptool.rdb.items.Record` at a time costs a few
microseconds each in Python; this loop walks the buffer directly and lets a job copy a whole run
of records with one slice. It is deliberately conservative: at anything it does not handle
(another opcode, a type outside the mask, an empty or unusual value, the end of the buffer) it
stops, and the general reader takes over from that exact position with its full checks and
error messages. It never raises on bad data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import constants as C
from .checksum import key_slot
from .source import LZF_MAX_RATIO

try:
    from ._fastscan import scan_run as _c_scan_run
except ImportError:  # built without a compiler: the Python loop below does the same job
    _c_scan_run = None

#: Types whose value is exactly one RDB String (a plain string or an encoded blob).
_ONE_STRING = (C.T_STRING, C.T_HASH_ZIPMAP, C.T_LIST_ZIPLIST, C.T_SET_INTSET, C.T_ZSET_ZIPLIST,
               C.T_HASH_ZIPLIST, C.T_HASH_LISTPACK, C.T_ZSET_LISTPACK, C.T_SET_LISTPACK)
#: Raw size of an encoded blob that holds nothing; such keys are left to the general reader.
_EMPTY_BLOB = {C.T_HASH_ZIPMAP: 2, C.T_LIST_ZIPLIST: 11, C.T_SET_INTSET: 8, C.T_ZSET_ZIPLIST: 11,
               C.T_HASH_ZIPLIST: 11, C.T_HASH_LISTPACK: 7, C.T_ZSET_LISTPACK: 7, C.T_SET_LISTPACK: 7}
_STRINGS_PER_ELEMENT = {C.T_LIST: 1, C.T_SET: 1, C.T_HASH: 2}

#: A mask for jobs that only look (inspect): every type this loop can walk.
SCANNABLE = frozenset([*_ONE_STRING, *_STRINGS_PER_ELEMENT, C.T_ZSET_2, C.T_LIST_QUICKLIST,
                       C.T_LIST_QUICKLIST_2])


def type_mask(types: frozenset[int] | set[int]) -> bytes:
    """A 256-byte table, 1 where the loop may walk records of that type."""
    return bytes(1 if t in types and t in SCANNABLE else 0 for t in range(256))


@dataclass
class ScanStats:
    """Counters a run updates as it goes (per type: keys and serialized bytes of type+key+value)."""

    type_keys: list[int] = field(default_factory=lambda: [0] * 256)
    type_bytes: list[int] = field(default_factory=lambda: [0] * 256)
    idle: int = 0
    freq: int = 0
    #: records at least this big are reported in ``Run.big`` (inspect keeps the biggest keys)
    big_threshold: int = 1 << 62


@dataclass(slots=True)
class Run:
    """Consecutive records of one database, as their exact bytes (prefix opcodes included).

    When the reader routed the run to shards, ``raw`` is empty: the bytes are in the Route.
    """

    db: int
    raw: bytes
    offset: int
    length: int
    keys: int
    expires: int
    #: (start, end) in ``raw`` of type+key+value of records at least ``big_threshold`` bytes
    big: list[tuple[int, int]]


def _skip_string(buf: bytes, pos: int) -> int:
    """Position after the RDB String at pos, or -1 if it is not one this loop handles."""
    b = buf[pos]
    if b < 0x40:
        return pos + 1 + b
    if b < 0x80:
        return pos + 2 + (((b & 0x3F) << 8) | buf[pos + 1])
    if b == 0x80:
        return pos + 5 + int.from_bytes(buf[pos + 1:pos + 5], "big")
    if b == 0xC0:
        return pos + 2
    if b == 0xC1:
        return pos + 3
    if b == 0xC2:
        return pos + 5
    if b == 0xC3:
        clen_pos = pos + 1
        c = buf[clen_pos]
        if c < 0x40:
            clen, after = c, clen_pos + 1
        elif c < 0x80:
            clen, after = ((c & 0x3F) << 8) | buf[clen_pos + 1], clen_pos + 2
        elif c == 0x80:
            clen, after = int.from_bytes(buf[clen_pos + 1:clen_pos + 5], "big"), clen_pos + 5
        else:
            return -1
        ulen, after = _length(buf, after)
        if not clen or ulen < 0 or ulen > clen * LZF_MAX_RATIO + 64:
            return -1  # the reader refuses it with a message
        return after + clen
    return -1


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after) of an RDB length, or (-1, -1) for forms this loop leaves alone."""
    b = buf[pos]
    if b < 0x40:
        return b, pos + 1
    if b < 0x80:
        return ((b & 0x3F) << 8) | buf[pos + 1], pos + 2
    if b == 0x80:
        return int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5
    return -1, -1


def node_state(buf: bytes, pos: int, count_at: int) -> int:
    """Whether the quicklist node String at pos holds elements: 1 yes, 0 no, -1 cannot tell.

    An empty node blob is a handful of bytes (listpack 7, ziplist 11), so a long or compressed
    String holds elements; a short one has its element count at ``count_at`` in its header.
    """
    b = buf[pos]
    if b >= 0x40:
        return 1
    if b < count_at + 2:
        return -1
    return 1 if buf[pos + 1 + count_at] | buf[pos + 2 + count_at] else 0


#: Where a quicklist node's blob keeps its element count: listpack (type 18) or ziplist (type 14).
NODE_COUNT_AT = {C.T_LIST_QUICKLIST_2: 4, C.T_LIST_QUICKLIST: 8}


def _skip_structured(buf: bytes, pos: int, t: int, limit: int) -> int:
    """Position after a count-prefixed value, or -1 (also for an empty one: the reader skips it)."""
    n, pos = _length(buf, pos)
    if n <= 0:
        return -1
    if t == C.T_ZSET_2:
        for _ in range(n):
            pos = _skip_string(buf, pos)
            if pos < 0 or pos > limit:
                return -1
            pos += 8
        return pos
    if t in NODE_COUNT_AT:  # quicklists: empty unless some node holds an element
        count_at = NODE_COUNT_AT[t]
        filled = False
        for _ in range(n):
            if t == C.T_LIST_QUICKLIST_2:
                container = buf[pos]
                if container not in (1, 2):
                    return -1
                pos += 1
                state = 1 if container == 1 else node_state(buf, pos, count_at)
            else:
                state = node_state(buf, pos, count_at)
            if state < 0:
                return -1
            filled = filled or state == 1
            pos = _skip_string(buf, pos)
            if pos < 0 or pos > limit:
                return -1
        return pos if filled else -1
    for _ in range(n * _STRINGS_PER_ELEMENT[t]):
        pos = _skip_string(buf, pos)
        if pos < 0 or pos > limit:
            return -1
    return pos


@dataclass
class Route:
    """Where a split sends each record: per-shard output buffers and counters, by key slot.

    ``owner`` is the 16384-byte table of a SlotLayout (byte i = the shard owning slot i).
    """

    owner: bytes
    outs: list[bytearray]
    keys: list[int]
    expires: list[int]
    #: per source database, a 16384-byte map of the slots its keys fall in (to tell whether
    #: several inputs could hold the same key: only if they share a slot)
    seen: dict[int, bytearray] = field(default_factory=dict)

    @classmethod
    def for_shards(cls, owner: bytes, shards: int) -> "Route":
        return cls(owner, [bytearray() for _ in range(shards)], [0] * shards, [0] * shards)

    def seen_for(self, db: int) -> bytearray:
        seen = self.seen.get(db)
        if seen is None:
            seen = self.seen[db] = bytearray(16384)
        return seen


def scan_run(buf: bytes, pos: int, mask: bytes, stats: ScanStats,
             route: Route | None = None, db: int = 0) -> tuple[int, int, int, list]:
    """Walk simple records from ``pos``; returns (end, keys, expires, big) for the complete ones.

    ``end == pos`` means the record at ``pos`` is not one for this loop. With ``route`` each
    record's bytes (prefix opcodes included) are appended to the output of the shard owning its
    key's slot, and the slot is marked in ``route.seen_for(db)``; records whose key is
    int-encoded or compressed stop the loop instead.
    Uses the C loop when it was built (``_fastscan.c``, the same rules), the Python one otherwise.
    """
    if _c_scan_run is None:
        return scan_run_python(buf, pos, mask, stats, route, db)
    if route is None:
        end, keys, expires, idle, freq, big = _c_scan_run(buf, pos, mask, stats.type_keys, stats.type_bytes,
                                                          stats.big_threshold)
    else:
        end, keys, expires, idle, freq, big = _c_scan_run(buf, pos, mask, stats.type_keys, stats.type_bytes,
                                                          stats.big_threshold, route.owner, route.outs,
                                                          route.keys, route.expires, route.seen_for(db))
    stats.idle += idle
    stats.freq += freq
    return end, keys, expires, big


def _raw_key(buf: bytes, pos: int) -> bytes | None:
    """The key String at pos when it is stored raw (the slot needs its bytes), else None."""
    b = buf[pos]
    if b < 0x40:
        return buf[pos + 1:pos + 1 + b]
    if b < 0x80:
        n = ((b & 0x3F) << 8) | buf[pos + 1]
        return buf[pos + 2:pos + 2 + n]
    if b == 0x80:
        n = int.from_bytes(buf[pos + 1:pos + 5], "big")
        return buf[pos + 5:pos + 5 + n]
    return None


def scan_run_python(buf: bytes, pos: int, mask: bytes, stats: ScanStats,
                    route: Route | None = None, db: int = 0) -> tuple[int, int, int, list]:
    """The loop in Python (used when the C extension is absent; the tests compare the two)."""
    limit = len(buf)
    seen = route.seen_for(db) if route is not None else None
    keys = expires = 0
    big: list[tuple[int, int]] = []
    type_keys, type_bytes = stats.type_keys, stats.type_bytes
    threshold = stats.big_threshold
    one_string = _EMPTY_BLOB
    idle_total = freq_total = 0
    end = pos
    try:
        while True:
            p = end
            t = buf[p]
            expire = idle = freq = 0
            if t == 0xFC:
                p += 9
                t = buf[p]
                expire = 1
            if t == 0xF8:
                _, p = _length(buf, p + 1)
                if p < 0:
                    break
                t = buf[p]
                idle = 1
            elif t == 0xF9:
                p += 2
                t = buf[p]
                freq = 1
            if not mask[t]:
                break
            start = p
            b = buf[p + 1]  # the key: almost always a short raw string
            p = p + 2 + b if b < 0x40 else _skip_string(buf, p + 1)
            if p < 0:
                break
            if t in one_string or t == 0:
                b = buf[p]
                if b < 0x40:
                    if t and b == one_string[t]:
                        break
                    p += 1 + b
                else:
                    p = _skip_string(buf, p)
                    if p < 0:
                        break
            else:
                p = _skip_structured(buf, p, t, limit)
                if p < 0:
                    break
            if p > limit:
                break
            if route is not None:
                key = _raw_key(buf, start + 1)
                if key is None:
                    break
                slot = key_slot(key)
                seen[slot] = 1
                shard = route.owner[slot]
                route.outs[shard] += buf[end:p]
                route.keys[shard] += 1
                route.expires[shard] += expire
            size = p - start
            type_keys[t] += 1
            type_bytes[t] += size
            if size >= threshold:
                big.append((start - pos, p - pos))
            keys += 1
            expires += expire
            idle_total += idle
            freq_total += freq
            end = p
    except IndexError:
        pass
    stats.idle += idle_total
    stats.freq += freq_total
    return end, keys, expires, big
