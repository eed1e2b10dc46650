"""Listpack codec (RDB format §5.2): the blob inside types 16, 17, 18, 20, 25 and stream nodes.

The blobs come from untrusted files, so decoding performs Redis's deep validation
(``lpValidateIntegrity``) while it walks: a listpack that would make Redis refuse a RESTORE under
``sanitize-dump-payload yes`` raises :class:`~snaptool.errors.RdbError` here too. Encoding makes the
choices Redis makes, so a blob built here is byte-identical to the one Redis builds by pushing the
same elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from snaptool.errors import RdbError
from snaptool.rdb.primitives import canonical_int

#: Redis refuses to grow a listpack past this (LISTPACK_MAX_SAFETY_SIZE); writers must stay within it.
MAX_SAFETY_SIZE = 1 << 30
#: ``num_elements`` value meaning "65535 or more: count by walking".
UNKNOWN_COUNT = 65535

_HEADER_SIZE = 6
_MIN_SIZE = _HEADER_SIZE + 1
#: Size of encoding+data for the fixed-size integer encodings 0xF1..0xF4.
_INT_SIZES = {0xF1: 3, 0xF2: 4, 0xF3: 5, 0xF4: 9}


def _backlen_width(l: int) -> int:
    """How many backlen bytes Redis uses for an element of l bytes; forward walks rely on exactly this."""
    if l <= 127:
        return 1
    if l < 16383:
        return 2
    if l < 2097151:
        return 3
    if l < 268435455:
        return 4
    return 5


def _encode_backlen(l: int) -> bytes:
    """Big-endian 7-bit groups; every byte but the first has bit 7 set so a backward reader knows where to stop."""
    width = _backlen_width(l)
    out = bytearray(width)
    for i in range(width - 1, 0, -1):
        out[i] = (l & 127) | 128
        l >>= 7
    out[0] = l
    return bytes(out)


def _decode_backlen(blob: bytes, last: int) -> int:
    """Read a backlen right to left from index last, as Redis does when it walks backwards; -1 past 5 bytes."""
    value = 0
    for shift in range(0, 35, 7):
        byte = blob[last]
        value |= (byte & 127) << shift
        if byte < 128:
            return value
        last -= 1
    return -1


def iter_listpack(blob: bytes) -> Iterator[bytes | int]:
    """Yield the elements of a listpack in order: integers as int, strings as bytes.

    The header is checked before this returns; each entry is checked before it is yielded, and the
    element count once the walk ends. Callers that must not act on part of a corrupt blob should use
    :func:`decode_listpack`.
    """
    size = len(blob)
    if size < _MIN_SIZE:
        raise RdbError(f"listpack: {size} bytes is too short (minimum {_MIN_SIZE})", offset=0)
    total = int.from_bytes(blob[0:4], "little")
    if total != size:
        raise RdbError(f"listpack: header says {total} bytes but the blob has {size}", offset=0)
    if blob[-1] != 0xFF:
        raise RdbError(f"listpack: last byte is 0x{blob[-1]:02x}, not the 0xFF terminator", offset=size - 1)
    return _walk(blob, blob[4] | blob[5] << 8)


def _walk(blob: bytes, expected: int) -> Iterator[bytes | int]:
    """The deep walk behind :func:`iter_listpack` (header already checked)."""
    end = len(blob) - 1  # the terminator; every entry, backlen included, must end at or before it
    pos = _HEADER_SIZE
    count = 0
    while True:
        b = blob[pos]
        if b < 0x80:  # 7-bit unsigned int
            l = 1
        elif b < 0xC0:  # string, 6-bit length
            l = 1 + (b & 0x3F)
        elif b < 0xE0:  # 13-bit signed int
            l = 2
        elif b < 0xF0:  # string, 12-bit length (pos < end, so pos + 1 is inside the blob)
            l = 2 + ((b & 0x0F) << 8 | blob[pos + 1])
        elif b == 0xF0:  # string, 32-bit length
            if pos + 5 > end:
                raise RdbError(f"listpack: entry header at {pos} runs past the end ({end - pos} bytes left)",
                               offset=pos)
            l = 5 + int.from_bytes(blob[pos + 1:pos + 5], "little")
        elif b == 0xFF:
            break
        else:
            l = _INT_SIZES.get(b, 0)
            if not l:
                raise RdbError(f"listpack: entry at {pos} has invalid encoding byte 0x{b:02x}", offset=pos)
        width = 1 if l <= 127 else _backlen_width(l)
        nxt = pos + l + width
        if nxt > end:
            raise RdbError(f"listpack: entry at {pos} runs past the end (length {l + width}, "
                           f"{end - pos} bytes left)", offset=pos)
        if (blob[nxt - 1] != l) if width == 1 else (blob[pos + l:nxt] != _encode_backlen(l)):
            # Not the canonical bytes. Redis compares the value read backwards, so accept what it accepts.
            backlen = _decode_backlen(blob, nxt - 1)
            if backlen != l:
                raise RdbError(f"listpack: entry at {pos} has backlen {backlen}, expected {l}", offset=pos + l)
        if b < 0x80:
            yield b
        elif b < 0xC0:
            yield blob[pos + 1:pos + l]
        elif b < 0xE0:
            value = (b & 0x1F) << 8 | blob[pos + 1]
            yield value - 8192 if value >= 4096 else value
        elif b < 0xF0:
            yield blob[pos + 2:pos + l]
        elif b == 0xF0:
            yield blob[pos + 5:pos + l]
        else:
            yield int.from_bytes(blob[pos + 1:pos + l], "little", signed=True)
        count += 1
        pos = nxt
    if pos != end:
        raise RdbError(f"listpack: terminator at {pos} but the blob ends at {end}", offset=pos)
    if expected != UNKNOWN_COUNT and expected != count:
        raise RdbError(f"listpack: header says {expected} elements but there are {count}", offset=4)


def decode_listpack(blob: bytes) -> list[bytes | int]:
    """All elements of a fully validated listpack (integers as int, strings as bytes)."""
    return list(iter_listpack(blob))


def _encode_element(item: bytes | int) -> bytes:
    """encoding+data+backlen of one element, with Redis's choices (lpEncodeGetType, lpEncodeBacklen)."""
    value = item if isinstance(item, int) else canonical_int(item)
    if value is None:
        n = len(item)
        if n < 64:
            body = bytes((0x80 | n,)) + item
        elif n < 4096:
            body = bytes((0xE0 | n >> 8, n & 0xFF)) + item
        elif n <= 0xFFFFFFFF:
            body = b"\xf0" + n.to_bytes(4, "little") + item
        else:
            raise ValueError(f"listpack: a {n}-byte string does not fit a 32-bit length")
    elif 0 <= value <= 127:
        body = bytes((value,))
    elif -4096 <= value <= 4095:
        value &= 0x1FFF
        body = bytes((0xC0 | value >> 8, value & 0xFF))
    elif -(1 << 15) <= value < 1 << 15:
        body = b"\xf1" + value.to_bytes(2, "little", signed=True)
    elif -(1 << 23) <= value < 1 << 23:
        body = b"\xf2" + value.to_bytes(3, "little", signed=True)
    elif -(1 << 31) <= value < 1 << 31:
        body = b"\xf3" + value.to_bytes(4, "little", signed=True)
    elif -(1 << 63) <= value < 1 << 63:
        body = b"\xf4" + value.to_bytes(8, "little", signed=True)
    else:
        raise ValueError(f"listpack: integer {value} does not fit in 64 bits")
    l = len(body)
    return body + (bytes((l,)) if l <= 127 else _encode_backlen(l))


def listpack_entry_size(item: bytes | int) -> int:
    """Bytes one element takes in a listpack, backlen included, so callers can fill nodes to a size limit."""
    return len(_encode_element(item))


def encode_listpack(items: Iterable[bytes | int]) -> bytes:
    """A listpack holding items, byte-identical to what Redis builds by appending them in order.

    Bytes that spell a canonical int64 are stored as integers, as Redis does; they decode as int.
    """
    parts = [_encode_element(item) for item in items]
    total = _MIN_SIZE + sum(map(len, parts))
    if total > MAX_SAFETY_SIZE:
        raise ValueError(f"listpack: {total} bytes exceeds Redis's {MAX_SAFETY_SIZE}-byte limit")
    header = total.to_bytes(4, "little") + min(len(parts), UNKNOWN_COUNT).to_bytes(2, "little")
    return b"".join((header, *parts, b"\xff"))
