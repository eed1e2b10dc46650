"""Intset codec: widths, ordering, and hostile blobs (RDB format §5.3)."""

from __future__ import annotations

import struct

import pytest

from snaptool.errors import RdbError
from snaptool.rdb.encodings.intset import decode_intset, encode_intset


@pytest.mark.parametrize("values,width", [
    ([0], 2), ([-(1 << 15), (1 << 15) - 1], 2), ([1 << 15], 4), ([-(1 << 15) - 1, 5], 4),
    ([-(1 << 31), (1 << 31) - 1], 4), ([1 << 31], 8), ([-(1 << 63), (1 << 63) - 1, 0], 8)])
def test_smallest_width(values: list[int], width: int) -> None:
    blob = encode_intset(values)
    assert struct.unpack_from("<II", blob) == (width, len(values))
    assert len(blob) == 8 + width * len(values)
    assert decode_intset(blob) == sorted(values)


def test_known_vector() -> None:
    blob = bytes.fromhex("02000000" "03000000" "fbff" "0100" "0a00")
    assert encode_intset([10, -5, 1]) == blob
    assert decode_intset(blob) == [-5, 1, 10]


def test_large_round_trip() -> None:
    values = list(range(-100000, 100000, 7))
    assert decode_intset(encode_intset(reversed(values))) == values


def test_encoder_rejects_what_redis_rejects() -> None:
    for bad in ([], [1, 1], [1 << 63]):
        with pytest.raises(ValueError):
            encode_intset(bad)


def test_wider_than_needed_is_accepted() -> None:
    assert decode_intset(struct.pack("<II2q", 8, 2, 1, 2)) == [1, 2]


@pytest.mark.parametrize("blob,match,offset", [
    (b"", "too short", 0),
    (b"\x02\x00\x00\x00\x01\x00\x00", "too short", 0),
    (struct.pack("<IIh", 3, 1, 5), "encoding 3 is not 2, 4 or 8", 0),
    (struct.pack("<II", 0, 0), "encoding 0", 0),
    (struct.pack("<II", 2, 0), "empty", 4),
    (struct.pack("<IIh", 2, 2, 5), r"header says 2 members of 2 bytes but 2 bytes follow it", 4),
    (struct.pack("<II3h", 2, 2, 5, 6, 7), "header says 2 members", 4),
    (struct.pack("<II", 8, 0xFFFFFFFF) + b"\x00" * 8, "header says 4294967295 members of 8 bytes", 4),
    (struct.pack("<II3h", 2, 3, 1, 1, 2), r"member 1 \(1\) is not greater than the one before it \(1\)", 10),
    (struct.pack("<II3i", 4, 3, 1, 3, 2), r"member 2 \(2\) is not greater", 16),
])
def test_hostile(blob: bytes, match: str, offset: int) -> None:
    with pytest.raises(RdbError, match=match) as info:
        decode_intset(blob)
    assert info.value.message.startswith("intset: ")
    assert info.value.offset == offset
