"""Intset codec (RDB format §5.3): the blob inside type 11, a set whose members are all integers.

Redis looks members up by binary search and skips probes wider than the set's width, so a blob must
be sorted, strictly increasing and (when written) of minimal width. Decoding applies Redis's deep
validation (``intsetValidateIntegrity``) and raises :class:`~snaptool.errors.RdbError` on any
violation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from snaptool.errors import RdbError

_HEADER = struct.Struct("<II")
_CODES = {2: "h", 4: "i", 8: "q"}


def decode_intset(blob: bytes) -> list[int]:
    """The members of a fully validated intset, in their stored (ascending) order."""
    size = len(blob)
    if size < _HEADER.size:
        raise RdbError(f"intset: {size} bytes is too short for the {_HEADER.size}-byte header", offset=0)
    width, length = _HEADER.unpack_from(blob, 0)
    code = _CODES.get(width)
    if code is None:
        raise RdbError(f"intset: encoding {width} is not 2, 4 or 8", offset=0)
    if length == 0:
        raise RdbError("intset: empty (length 0)", offset=4)
    if _HEADER.size + length * width != size:
        raise RdbError(f"intset: header says {length} members of {width} bytes but {size - _HEADER.size} "
                       f"bytes follow it", offset=4)
    values = list(struct.unpack_from(f"<{length}{code}", blob, _HEADER.size))
    if any(a >= b for a, b in zip(values, values[1:])):
        i = next(i for i in range(1, length) if values[i - 1] >= values[i])
        raise RdbError(f"intset: member {i} ({values[i]}) is not greater than the one before it ({values[i - 1]})",
                       offset=_HEADER.size + i * width)
    return values


def encode_intset(values: Iterable[int]) -> bytes:
    """An intset of distinct integers: sorted, at the smallest width that holds them all, as Redis keeps it."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("intset: Redis rejects an empty intset")
    if any(a == b for a, b in zip(ordered, ordered[1:])):
        raise ValueError("intset: duplicate members")
    low, high = ordered[0], ordered[-1]
    if -(1 << 15) <= low and high < 1 << 15:
        width = 2
    elif -(1 << 31) <= low and high < 1 << 31:
        width = 4
    elif -(1 << 63) <= low and high < 1 << 63:
        width = 8
    else:
        raise ValueError("intset: a member does not fit in 64 bits")
    return _HEADER.pack(width, len(ordered)) + struct.pack(f"<{len(ordered)}{_CODES[width]}", *ordered)
