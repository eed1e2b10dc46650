"""Encoding of the RDB primitives: lengths, strings, doubles, times (RDB format §4).

The writer side lives here; reading is done by :mod:`snaptool.rdb.source`, which works on streams.
"""

from __future__ import annotations

import struct

import lzf

_PACK_D = struct.Struct("<d").pack
_PACK_Q = struct.Struct("<q").pack
_INT8_MIN, _INT8_MAX = -(1 << 7), (1 << 7) - 1
_INT16_MIN, _INT16_MAX = -(1 << 15), (1 << 15) - 1
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

#: Strings longer than this are tried with LZF, as Redis does with `rdbcompression yes`.
LZF_MIN_LENGTH = 20


def encode_length(n: int) -> bytes:
    """The shortest length form, as Redis writes it (1, 2, 5 or 9 bytes)."""
    if n < 64:
        return bytes((n,))
    if n < 16384:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def canonical_int(data: bytes) -> int | None:
    """The integer a string spells if Redis would store it as one (no sign '+', no leading zeros), else None."""
    n = len(data)
    if n == 0 or n > 20:
        return None
    first = data[0]
    if first == 45:  # '-'
        if n == 1 or data[1] == 48:
            return None
    elif first == 48:
        return 0 if n == 1 else None
    if not data.isdigit() and not (first == 45 and data[1:].isdigit()):
        return None
    value = int(data)
    if value < -(1 << 63) or value >= (1 << 63):
        return None
    return value


def encode_string(data: bytes) -> bytes:
    """An RDB String: int-encoded when Redis would, LZF when it saves 4+ bytes, raw otherwise."""
    n = len(data)
    if n <= 11:
        value = canonical_int(data)
        if value is not None:
            if _INT8_MIN <= value <= _INT8_MAX:
                return b"\xc0" + value.to_bytes(1, "little", signed=True)
            if _INT16_MIN <= value <= _INT16_MAX:
                return b"\xc1" + value.to_bytes(2, "little", signed=True)
            if _INT32_MIN <= value <= _INT32_MAX:
                return b"\xc2" + value.to_bytes(4, "little", signed=True)
    if n > LZF_MIN_LENGTH:
        packed = lzf.compress(data, n - 4) if n > 4 else None
        if packed:
            return b"\xc3" + encode_length(len(packed)) + encode_length(n) + packed
    return encode_length(n) + data


def encode_raw_string(data: bytes) -> bytes:
    """An RDB String that is never int-encoded or compressed (for blobs a reader may want verbatim)."""
    return encode_length(len(data)) + data


def encode_double_binary(value: float) -> bytes:
    """8-byte little-endian IEEE double (ZSET_2 scores, module doubles)."""
    return _PACK_D(value)


def encode_double_legacy(value: float) -> bytes:
    """The pre-RDB-8 score form: a length byte and ASCII text (253 NaN, 254 +inf, 255 -inf)."""
    if value != value:
        return b"\xfd"
    if value == float("inf"):
        return b"\xfe"
    if value == float("-inf"):
        return b"\xff"
    if value == int(value) and abs(value) < (1 << 52):
        text = b"%d" % int(value)
    else:
        text = (b"%.17g" % value)
    return bytes((len(text),)) + text


def encode_ms_time(ms: int) -> bytes:
    """8-byte little-endian signed milliseconds."""
    return _PACK_Q(ms)
