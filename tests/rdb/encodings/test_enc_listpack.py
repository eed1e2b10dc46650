"""Listpack codec: round trips, Redis's encoding choices, and hand-made hostile blobs (RDB format §5.2)."""

from __future__ import annotations

import time

import pytest

from snaptool.errors import RdbError
from snaptool.rdb.encodings.listpack import (
    decode_listpack, encode_listpack, iter_listpack, listpack_entry_size)

INT_BOUNDARIES = [0, 1, 12, 13, 127, 128, -1, -4096, 4095, -4097, 4096,
                  (1 << 15) - 1, -(1 << 15), 1 << 15, -(1 << 15) - 1,
                  (1 << 23) - 1, -(1 << 23), 1 << 23, -(1 << 23) - 1,
                  (1 << 31) - 1, -(1 << 31), 1 << 31, -(1 << 31) - 1,
                  (1 << 63) - 1, -(1 << 63)]
STRINGS = [b"", b"a", b"x" * 63, b"y" * 64, b"z" * 4095, b"w" * 4096, b"\xff" * 100, b"\x00\xff"]


def only_entry(blob: bytes) -> bytes:
    """The encoding+data+backlen bytes of a one-element listpack."""
    return blob[6:-1]


@pytest.mark.parametrize("value", INT_BOUNDARIES)
def test_int_round_trip(value: int) -> None:
    assert decode_listpack(encode_listpack([value])) == [value]
    assert decode_listpack(encode_listpack([b"%d" % value])) == [value]


@pytest.mark.parametrize("value,first,size", [
    (0, 0x00, 1), (127, 0x7F, 1), (128, 0xC0, 2), (-1, 0xDF, 2), (-4096, 0xD0, 2), (4095, 0xCF, 2),
    (4096, 0xF1, 3), (-4097, 0xF1, 3), ((1 << 15) - 1, 0xF1, 3), (1 << 15, 0xF2, 4), (-(1 << 23), 0xF2, 4),
    (1 << 23, 0xF3, 5), (-(1 << 31), 0xF3, 5), (1 << 31, 0xF4, 9), (-(1 << 63), 0xF4, 9)])
def test_int_uses_smallest_encoding(value: int, first: int, size: int) -> None:
    body = only_entry(encode_listpack([value]))
    assert body[0] == first
    assert len(body) == size + 1  # one backlen byte
    assert body[-1] == size
    assert listpack_entry_size(value) == size + 1


@pytest.mark.parametrize("data", STRINGS)
def test_string_round_trip(data: bytes) -> None:
    assert decode_listpack(encode_listpack([data])) == [data]


@pytest.mark.parametrize("length,header", [(0, 1), (63, 1), (64, 2), (4095, 2), (4096, 5), (70000, 5)])
def test_string_length_forms(length: int, header: int) -> None:
    data = b"s" * length
    l = header + length
    width = 1 if l <= 127 else 2 if l < 16383 else 3
    assert listpack_entry_size(data) == l + width
    body = only_entry(encode_listpack([data]))
    assert len(body) == l + width
    assert body[header:l] == data


@pytest.mark.parametrize("length,backlen", [
    (125, b"\x7f"),                  # 12-bit form: l = 127, the last one-byte value
    (126, b"\x01\x80"),              # l = 128: first two-byte value
    (16377, b"\x7f\xfe"),            # 32-bit form: l = 16382, the last two-byte value
    (16378, b"\x00\xff\xff"),        # l = 16383 already takes three bytes (strict "<")
])
def test_backlen_canonical_bytes(length: int, backlen: bytes) -> None:
    blob = encode_listpack([b"b" * length])
    assert blob[-1 - len(backlen):-1] == backlen
    assert decode_listpack(blob) == [b"b" * length]


def test_canonical_int_strings_become_ints_others_stay_strings() -> None:
    items = [b"0", b"-0", b"007", b"+5", b" 5", b"5 ", b"-", b"9223372036854775807", b"9223372036854775808",
             b"-9223372036854775808", b"-9223372036854775809", b"1e3", b"12345678901234567890"]
    assert decode_listpack(encode_listpack(items)) == [
        0, b"-0", b"007", b"+5", b" 5", b"5 ", b"-", (1 << 63) - 1, b"9223372036854775808",
        -(1 << 63), b"-9223372036854775809", b"1e3", b"12345678901234567890"]


def test_known_vector() -> None:
    # total 12, 2 elements; "a" = 81 61 backlen 02; 1 = 01 backlen 01; terminator.
    blob = bytes.fromhex("0c000000" "0200" "816102" "0101" "ff")
    assert encode_listpack([b"a", 1]) == blob
    assert encode_listpack([b"a", b"1"]) == blob
    assert decode_listpack(blob) == [b"a", 1]


def test_empty() -> None:
    assert encode_listpack([]) == bytes.fromhex("07000000" "0000" "ff")
    assert decode_listpack(encode_listpack([])) == []


def test_mixed_round_trip() -> None:
    items = [*INT_BOUNDARIES, *STRINGS, b"12", b"-12"]
    expected = [*INT_BOUNDARIES, *STRINGS, 12, -12]
    assert decode_listpack(encode_listpack(items)) == expected
    assert list(iter_listpack(encode_listpack(items))) == expected


def test_count_sentinel() -> None:
    items = list(range(70000))
    blob = encode_listpack(items)
    assert blob[4:6] == b"\xff\xff"
    assert decode_listpack(blob) == items
    exact = encode_listpack(range(65534))
    assert exact[4:6] == (65534).to_bytes(2, "little")
    assert len(decode_listpack(exact)) == 65534
    assert encode_listpack(range(65535))[4:6] == b"\xff\xff"


def test_sentinel_accepts_any_count() -> None:
    blob = encode_listpack([1, 2])
    assert decode_listpack(blob[:4] + b"\xff\xff" + blob[6:]) == [1, 2]


def test_non_canonical_forms_are_accepted() -> None:
    # "123" as a 6-bit string, a 1-byte string in the 32-bit form, 5 as int64: Redis loads all of them.
    elements = [b"\x83123\x04", b"\xf0\x01\x00\x00\x00q\x06", b"\xf4" + (5).to_bytes(8, "little") + b"\x09"]
    body = b"".join(elements)
    blob = (7 + len(body)).to_bytes(4, "little") + b"\x03\x00" + body + b"\xff"
    assert decode_listpack(blob) == [b"123", b"q", 5]


def test_backlen_that_reads_back_right_is_accepted() -> None:
    # 0 followed by backlen 0x81: read right to left it is 1 then 0, i.e. 1 = l. Redis 7.0 accepts it.
    blob = bytes.fromhex("0b000000" "0200" "0081" "0501" "ff")
    assert decode_listpack(blob) == [0, 5]


def test_encoder_rejects_what_redis_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_listpack([1 << 63])
    with pytest.raises(ValueError):
        encode_listpack([-(1 << 63) - 1])


def patched(blob: bytes, at: int, value: int) -> bytes:
    """``blob`` with the byte at ``at`` set to ``value``."""
    return blob[:at] + bytes((value,)) + blob[at + 1:]


def raises(blob: bytes, match: str, offset: int | None = None) -> RdbError:
    start = time.perf_counter()
    with pytest.raises(RdbError, match=match) as info:
        decode_listpack(blob)
    assert time.perf_counter() - start < 0.1
    assert str(info.value.message).startswith("listpack: ")
    if offset is not None:
        assert info.value.offset == offset
    return info.value


def test_header_checks() -> None:
    good = encode_listpack([b"abc", 7])
    raises(b"", "too short", 0)
    raises(good[:6], "too short", 0)
    raises(b"\xff\xff\xff\xff" + good[4:], r"header says 4294967295 bytes but the blob has", 0)
    raises(good[:-1] + b"\x00", "not the 0xFF terminator", len(good) - 1)
    raises(good + b"\xff", "header says", 0)
    raises(good[:4] + b"\x03\x00" + good[6:], "header says 3 elements but there are 2", 4)


def test_iter_checks_the_header_before_yielding() -> None:
    with pytest.raises(RdbError):
        iter_listpack(b"\x00" * 10)


def test_lying_lengths_fail_fast() -> None:
    # A 32-bit string length of 1 GB in a 20-byte blob.
    blob = (20).to_bytes(4, "little") + b"\x01\x00" + b"\xf0" + (1 << 30).to_bytes(4, "little") + b"\x00" * 8 + b"\xff"
    assert len(blob) == 20
    raises(blob, r"entry at 6 runs past the end \(length 1073741834, 13 bytes left\)", 6)
    # The maximum 32-bit length.
    raises(blob[:7] + b"\xff\xff\xff\xff" + blob[11:], "runs past the end", 6)
    # A 12-bit string length of 4095 in a short blob.
    short = (12).to_bytes(4, "little") + b"\x01\x00" + b"\xef\xff" + b"abc" + b"\xff"
    raises(short, "runs past the end", 6)
    # A 32-bit header that is itself cut by the terminator.
    raises((9).to_bytes(4, "little") + b"\x01\x00\xf0\x01\xff", "entry header at 6 runs past the end", 6)


@pytest.mark.parametrize("byte", range(0xF5, 0xFF))
def test_invalid_encoding_bytes(byte: int) -> None:
    blob = (9).to_bytes(4, "little") + b"\x01\x00" + bytes((byte, 1)) + b"\xff"
    raises(blob, f"invalid encoding byte 0x{byte:02x}", 6)


def test_entry_checks() -> None:
    good = encode_listpack([b"abc", 300])  # 83 'abc' 04 | c1 2c 02 | ff
    raises(patched(good, 10, 5), "entry at 6 has backlen 5, expected 4", 10)  # bad backlen
    raises(patched(good, 11, 0xFF), "terminator at 11 but the blob ends at 14", 11)  # early end
    # A string entry with no room left for its backlen.
    raises((11).to_bytes(4, "little") + b"\x01\x00\x83abc\xff", r"entry at 6 runs past the end \(length 5, 4", 6)
    truncated = (9).to_bytes(4, "little") + b"\x01\x00\xf4\x01\xff"
    raises(truncated, "entry at 6 runs past the end", 6)


def test_only_rdb_errors_from_every_truncation_and_byte_flip() -> None:
    good = encode_listpack([b"x" * 70, -5000, 1 << 40, b"", b"abc", 3])
    for cut in range(len(good)):
        with pytest.raises(RdbError):
            decode_listpack(good[:cut])
    for i in range(len(good)):
        for value in (0x00, 0x7F, 0x80, 0xC0, 0xE0, 0xF0, 0xF4, 0xFF):
            blob = patched(good, i, value)
            try:
                decode_listpack(blob)
            except RdbError as exc:
                assert exc.offset is not None and 0 <= exc.offset < len(blob)
