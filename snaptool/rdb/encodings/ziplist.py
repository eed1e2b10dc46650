"""Ziplist codec (RDB format §5.1): the blob inside types 10, 12, 13 and the nodes of type 14.

Ziplists only appear in files from Redis 6.2 and older, and every loader since 7.0 deep-validates
them (``ziplistValidateIntegrity``) before converting them; decoding here applies the same checks
so a hostile blob raises :class:`~snaptool.errors.RdbError` instead of yielding garbage. Encoding
makes Redis's choices (``zipTryEncoding``), so a blob built here equals the one Redis builds by
pushing the same elements at the tail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from snaptool.errors import RdbError
from snaptool.rdb.primitives import canonical_int

#: Redis refuses to grow a ziplist past this (ZIPLIST_MAX_SAFETY_SIZE); writers must stay within it.
MAX_SAFETY_SIZE = 1 << 30
#: ``zllen`` value meaning "65535 or more: count by walking".
UNKNOWN_COUNT = 65535

_HEADER_SIZE = 10
_MIN_SIZE = _HEADER_SIZE + 1
#: Data size of each integer encoding byte; the immediates 0xF1..0xFD carry their value in the byte.
_INT_SIZES = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1, **{b: 0 for b in range(0xF1, 0xFE)}}


def iter_ziplist(blob: bytes) -> Iterator[bytes | int]:
    """Yield the entries of a ziplist in order: integers as int, strings as bytes.

    The header is checked before this returns; each entry is checked before it is yielded, and
    zltail and the entry count once the walk ends. Callers that must not act on part of a corrupt
    blob should use :func:`decode_ziplist`.
    """
    size = len(blob)
    if size < _MIN_SIZE:
        raise RdbError(f"ziplist: {size} bytes is too short (minimum {_MIN_SIZE})", offset=0)
    zlbytes = int.from_bytes(blob[0:4], "little")
    if zlbytes != size:
        raise RdbError(f"ziplist: header says {zlbytes} bytes but the blob has {size}", offset=0)
    if blob[-1] != 0xFF:
        raise RdbError(f"ziplist: last byte is 0x{blob[-1]:02x}, not the 0xFF terminator", offset=size - 1)
    zltail = int.from_bytes(blob[4:8], "little")
    if zltail >= size:
        raise RdbError(f"ziplist: zltail {zltail} is past the end ({size} bytes)", offset=4)
    return _walk(blob, zltail, blob[8] | blob[9] << 8)


def _walk(blob: bytes, zltail: int, expected: int) -> Iterator[bytes | int]:
    """The deep walk behind :func:`iter_ziplist` (header already checked)."""
    end = len(blob) - 1  # the terminator; every entry must end at or before it
    pos = _HEADER_SIZE
    prev_size = 0
    count = 0
    while True:
        b = blob[pos]
        if b == 0xFF:
            break
        # A 5-byte prevlen may hold a small value (Redis does not shrink it), so only the value counts.
        start = pos + 1 if b < 0xFE else pos + 5
        if start >= end:  # no room for the encoding byte before the terminator
            raise RdbError(f"ziplist: entry header at {pos} runs past the end ({end - pos} bytes left)",
                           offset=pos)
        prevlen = b if b < 0xFE else int.from_bytes(blob[pos + 1:start], "little")
        if prevlen != prev_size:
            raise RdbError(f"ziplist: entry at {pos} has prevlen {prevlen}, expected {prev_size}", offset=pos)
        # start < end, so the encoding byte and the one after it are inside the blob.
        e = blob[start]
        if e < 0x40:  # string, 6-bit length
            data = start + 1
            nxt = data + e
        elif e < 0x80:  # string, 14-bit big-endian length
            data = start + 2
            nxt = data + ((e & 0x3F) << 8 | blob[start + 1])
        elif e < 0xC0:  # string, 32-bit big-endian length
            data = start + 5
            if data > end:
                raise RdbError(f"ziplist: entry header at {pos} runs past the end ({end - pos} bytes left)",
                               offset=pos)
            nxt = data + int.from_bytes(blob[start + 1:data], "big")
        else:
            n = _INT_SIZES.get(e)
            if n is None:
                raise RdbError(f"ziplist: entry at {pos} has invalid encoding byte 0x{e:02x}", offset=start)
            data = start + 1
            nxt = data + n
        if nxt > end:
            raise RdbError(f"ziplist: entry at {pos} runs past the end (length {nxt - pos}, "
                           f"{end - pos} bytes left)", offset=pos)
        if e < 0xC0:
            yield blob[data:nxt]
        elif data == nxt:
            yield e - 0xF1
        else:
            yield int.from_bytes(blob[data:nxt], "little", signed=True)
        count += 1
        prev_size = nxt - pos
        pos = nxt
    if pos != end:
        raise RdbError(f"ziplist: terminator at {pos} but the blob ends at {end}", offset=pos)
    # Like Redis, only a non-empty ziplist's zltail must point at its last entry.
    if count and zltail != pos - prev_size:
        raise RdbError(f"ziplist: zltail is {zltail} but the last entry is at {pos - prev_size}", offset=4)
    if expected != UNKNOWN_COUNT and expected != count:
        raise RdbError(f"ziplist: header says {expected} entries but there are {count}", offset=8)


def decode_ziplist(blob: bytes) -> list[bytes | int]:
    """All entries of a fully validated ziplist (integers as int, strings as bytes)."""
    return list(iter_ziplist(blob))


def _encode_payload(item: bytes | int, legacy: bool = False) -> bytes:
    """encoding+data of one entry (everything but prevlen), with Redis's zipTryEncoding choices.

    ``legacy``: only the int16/32/64 forms, for RDB 2-5 loaders (Redis 2.4), which predate the
    4-bit immediates, int8 and int24.
    """
    value = item if isinstance(item, int) else canonical_int(item)
    if value is None:
        n = len(item)
        if n < 64:
            return bytes((n,)) + item
        if n < 16384:
            return bytes((0x40 | n >> 8, n & 0xFF)) + item
        if n <= 0xFFFFFFFF:
            return b"\x80" + n.to_bytes(4, "big") + item
        raise ValueError(f"ziplist: a {n}-byte string does not fit a 32-bit length")
    if 0 <= value <= 12 and not legacy:
        return bytes((0xF1 + value,))
    if -128 <= value <= 127 and not legacy:
        return b"\xfe" + value.to_bytes(1, "little", signed=True)
    if -(1 << 15) <= value < 1 << 15:
        return b"\xc0" + value.to_bytes(2, "little", signed=True)
    if -(1 << 23) <= value < 1 << 23 and not legacy:
        return b"\xf0" + value.to_bytes(3, "little", signed=True)
    if -(1 << 31) <= value < 1 << 31:
        return b"\xd0" + value.to_bytes(4, "little", signed=True)
    if -(1 << 63) <= value < 1 << 63:
        return b"\xe0" + value.to_bytes(8, "little", signed=True)
    raise ValueError(f"ziplist: integer {value} does not fit in 64 bits")


def _encode_prevlen(prev_size: int) -> bytes:
    """1 byte below 254, else 0xFE and a u32le, as Redis writes it for a fresh tail push."""
    return bytes((prev_size,)) if prev_size < 254 else b"\xfe" + prev_size.to_bytes(4, "little")


def ziplist_entry_size(item: bytes | int, prev_size: int = 0) -> int:
    """Bytes one entry takes when it follows an entry of prev_size bytes, so callers can fill nodes to a limit."""
    return (1 if prev_size < 254 else 5) + len(_encode_payload(item))


def encode_ziplist(items: Iterable[bytes | int], *, legacy: bool = False) -> bytes:
    """A ziplist holding items, byte-identical to what Redis builds by pushing them at the tail.

    Bytes that spell a canonical int64 are stored as integers, as Redis does; they decode as int.
    ``legacy`` limits integers to the forms RDB 2-5 loaders read.
    """
    parts = []
    offset = _HEADER_SIZE
    tail = _HEADER_SIZE
    prev_size = 0
    for item in items:
        payload = _encode_payload(item, legacy)
        prevlen = _encode_prevlen(prev_size)
        parts.append(prevlen)
        parts.append(payload)
        tail = offset
        prev_size = len(prevlen) + len(payload)
        offset += prev_size
    total = offset + 1
    if total > MAX_SAFETY_SIZE:
        raise ValueError(f"ziplist: {total} bytes exceeds Redis's {MAX_SAFETY_SIZE}-byte limit")
    count = min(len(parts) // 2, UNKNOWN_COUNT)
    header = total.to_bytes(4, "little") + tail.to_bytes(4, "little") + count.to_bytes(2, "little")
    return b"".join((header, *parts, b"\xff"))
