"""Zipmap codec (RDB format §5.4): the blob inside type 9, the hash encoding of Redis 2.4.

Only Redis 2.4 writes zipmaps, but every later loader still accepts them and always deep-validates
them (``zipmapValidateIntegrity``); decoding applies the same checks and raises
:class:`~snaptool.errors.RdbError` on any violation. Encoding writes the layout Redis 2.4 writes,
with no free bytes after values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from snaptool.errors import RdbError

#: ``zmlen`` value meaning "254 or more pairs: count by walking".
UNKNOWN_COUNT = 254
_BIG_LENGTH = 254
_END = 0xFF


def _read_length(blob: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """A zipmap length at pos and the position after it.

    Any byte from 254 up means a u32le follows, as in Redis's validator. Redis's iterator derives the
    width from the value, so a 5-byte form holding less than 254 would be misread: reject it.
    """
    b = blob[pos]
    if b < _BIG_LENGTH:
        return b, pos + 1
    if pos + 5 > end:
        raise RdbError(f"zipmap: {what} length at {pos} runs past the end ({end - pos} bytes left)", offset=pos)
    n = int.from_bytes(blob[pos + 1:pos + 5], "little")
    if n < _BIG_LENGTH:
        raise RdbError(f"zipmap: {what} length at {pos} stores {n} in the 5-byte form", offset=pos)
    return n, pos + 5


def iter_zipmap(blob: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield the (field, value) pairs of a zipmap in order.

    The header is checked before this returns; each pair is checked before it is yielded, and the
    pair count once the walk ends. Callers that must not act on part of a corrupt blob should use
    :func:`decode_zipmap`.
    """
    size = len(blob)
    if size < 2:
        raise RdbError(f"zipmap: {size} bytes is too short (minimum 2)", offset=0)
    if blob[-1] != _END:
        raise RdbError(f"zipmap: last byte is 0x{blob[-1]:02x}, not the 0xFF terminator", offset=size - 1)
    return _walk(blob, blob[0])


def _walk(blob: bytes, zmlen: int) -> Iterator[tuple[bytes, bytes]]:
    """The deep walk behind :func:`iter_zipmap` (header already checked)."""
    end = len(blob) - 1  # the terminator; every pair, free bytes included, must end at or before it
    pos = 1
    count = 0
    while blob[pos] != _END:
        field_len, field = _read_length(blob, pos, end, "field")
        value_at = field + field_len
        if value_at > end:
            raise RdbError(f"zipmap: field at {pos} runs past the end (length {field_len}, "
                           f"{end - pos} bytes left)", offset=pos)
        value_len, free_at = _read_length(blob, value_at, end, "value")
        value = free_at + 1  # free_at <= end, checked by _read_length
        nxt = value + value_len + blob[free_at]
        if nxt > end:
            raise RdbError(f"zipmap: value at {value_at} runs past the end (length {value_len} + "
                           f"{blob[free_at]} free, {end - value_at} bytes left)", offset=value_at)
        yield blob[field:value_at], blob[value:value + value_len]
        count += 1
        pos = nxt
    if count == 0:
        raise RdbError("zipmap: no pairs (Redis rejects an empty zipmap)", offset=1)
    if zmlen != UNKNOWN_COUNT and zmlen != count:
        raise RdbError(f"zipmap: header says {zmlen} pairs but there are {count}", offset=0)


def decode_zipmap(blob: bytes) -> list[tuple[bytes, bytes]]:
    """All (field, value) pairs of a fully validated zipmap."""
    return list(iter_zipmap(blob))


def _encode_length(n: int) -> bytes:
    """1 byte below 254, else 0xFE and a u32le, as Redis 2.4 writes lengths."""
    if n < _BIG_LENGTH:
        return bytes((n,))
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    raise ValueError(f"zipmap: a {n}-byte string does not fit a 32-bit length")


def encode_zipmap(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A zipmap of (field, value) pairs in the Redis 2.4 layout, every free byte 0.

    Loaders reject an empty zipmap and duplicate fields; the empty case raises ValueError here.
    """
    parts = []
    for field, value in pairs:
        parts += (_encode_length(len(field)), field, _encode_length(len(value)), b"\x00", value)
    count = len(parts) // 5
    if not count:
        raise ValueError("zipmap: Redis rejects an empty zipmap")
    return b"".join((bytes((min(count, UNKNOWN_COUNT),)), *parts, b"\xff"))
