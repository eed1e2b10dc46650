"""Ziplist codec: round trips, Redis's zipTryEncoding choices, and hand-made hostile blobs (RDB format §5.1)."""

from __future__ import annotations

import time

import pytest

from snaptool.errors import RdbError
from snaptool.rdb.encodings.ziplist import decode_ziplist, encode_ziplist, iter_ziplist, ziplist_entry_size

INT_BOUNDARIES = [*range(0, 13), 13, -1, 127, 128, -128, -129,
                  (1 << 15) - 1, -(1 << 15), 1 << 15, -(1 << 15) - 1,
                  (1 << 23) - 1, -(1 << 23), 1 << 23, -(1 << 23) - 1,
                  (1 << 31) - 1, -(1 << 31), 1 << 31, -(1 << 31) - 1,
                  (1 << 63) - 1, -(1 << 63)]
STRINGS = [b"", b"a", b"x" * 63, b"y" * 64, b"z" * 16383, b"w" * 16384, b"\xff" * 300]


def header(blob: bytes) -> tuple[int, int, int]:
    return (int.from_bytes(blob[0:4], "little"), int.from_bytes(blob[4:8], "little"),
            int.from_bytes(blob[8:10], "little"))


def test_reference_vector() -> None:
    blob = bytes.fromhex("0f000000" "0c000000" "0200" "00f3" "02f6" "ff")
    assert encode_ziplist([2, 5]) == blob
    assert encode_ziplist([b"2", b"5"]) == blob
    assert decode_ziplist(blob) == [2, 5]


def test_empty() -> None:
    blob = encode_ziplist([])
    assert blob == bytes.fromhex("0b000000" "0a000000" "0000" "ff")
    assert decode_ziplist(blob) == []


@pytest.mark.parametrize("value", INT_BOUNDARIES)
def test_int_round_trip(value: int) -> None:
    assert decode_ziplist(encode_ziplist([value])) == [value]
    assert decode_ziplist(encode_ziplist([b"%d" % value])) == [value]


@pytest.mark.parametrize("value,encoding,size", [
    (0, 0xF1, 0), (12, 0xFD, 0), (13, 0xFE, 1), (-1, 0xFE, 1), (127, 0xFE, 1), (-128, 0xFE, 1),
    (128, 0xC0, 2), (-129, 0xC0, 2), ((1 << 15) - 1, 0xC0, 2), (1 << 15, 0xF0, 3), (-(1 << 23), 0xF0, 3),
    (1 << 23, 0xD0, 4), (-(1 << 31), 0xD0, 4), (1 << 31, 0xE0, 8), (-(1 << 63), 0xE0, 8)])
def test_int_uses_zip_try_encoding(value: int, encoding: int, size: int) -> None:
    blob = encode_ziplist([value])
    assert blob[10] == 0  # prevlen of the first entry
    assert blob[11] == encoding
    assert len(blob) == 10 + 2 + size + 1
    assert ziplist_entry_size(value) == 2 + size


@pytest.mark.parametrize("length,first", [(0, 0x00), (63, 0x3F), (64, 0x40), (16383, 0x7F), (16384, 0x80)])
def test_string_length_forms(length: int, first: int) -> None:
    data = b"s" * length
    blob = encode_ziplist([data])
    assert blob[11] == first
    head = 1 if length < 64 else 2 if length < 16384 else 5
    if head == 5:
        assert blob[12:16] == length.to_bytes(4, "big")
    assert ziplist_entry_size(data) == 1 + head + length
    assert decode_ziplist(blob) == [data]


@pytest.mark.parametrize("data", STRINGS)
def test_string_round_trip(data: bytes) -> None:
    assert decode_ziplist(encode_ziplist([data, data])) == [data, data]


def test_prevlen_and_zltail() -> None:
    small, big = b"s" * 10, b"b" * 300
    blob = encode_ziplist([small, big, 1, big, small])
    # entries: [00 0a s*10] (12) [0c 41 2c b*300] (303) [fe 2f010000 f2] (6) [06 41 2c b*300] (303) [fe ...]
    assert blob[10 + 12] == 12
    assert blob[10 + 12 + 303:10 + 12 + 303 + 6] == b"\xfe" + (303).to_bytes(4, "little") + b"\xf2"
    zlbytes, zltail, zllen = header(blob)
    assert (zlbytes, zllen) == (len(blob), 5)
    assert zltail == 10 + 12 + 303 + 6 + 303
    assert blob[zltail:zltail + 5] == b"\xfe" + (303).to_bytes(4, "little")
    assert ziplist_entry_size(small, prev_size=303) == 5 + 1 + 10
    assert decode_ziplist(blob) == [small, big, 1, big, small]


def test_canonical_int_strings_become_ints() -> None:
    items = [b"0", b"-0", b"01", b"+1", b"1 ", b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808"]
    assert decode_ziplist(encode_ziplist(items)) == [
        0, b"-0", b"01", b"+1", b"1 ", (1 << 63) - 1, b"9223372036854775808", -(1 << 63)]


def test_mixed_round_trip() -> None:
    items = [*INT_BOUNDARIES, *STRINGS]
    assert decode_ziplist(encode_ziplist(items)) == items
    assert list(iter_ziplist(encode_ziplist(items))) == items


def test_count_sentinel() -> None:
    items = [i % 300 for i in range(70000)]
    blob = encode_ziplist(items)
    assert blob[8:10] == b"\xff\xff"
    assert decode_ziplist(blob) == items
    assert encode_ziplist(range(65534))[8:10] == (65534).to_bytes(2, "little")
    assert encode_ziplist(range(65535))[8:10] == b"\xff\xff"


def test_non_canonical_forms_are_accepted() -> None:
    # A 5-byte prevlen holding 3 (Redis does not shrink them) and "b" in the 14-bit form.
    first, second = b"\x00\x01a", b"\xfe\x03\x00\x00\x00\x40\x01b"
    body = first + second
    blob = (11 + len(body)).to_bytes(4, "little") + (13).to_bytes(4, "little") + b"\x02\x00" + body + b"\xff"
    assert decode_ziplist(blob) == [b"a", b"b"]
    # The low 6 bits of a 32-bit string header are ignored.
    body = b"\x00\xbf\x00\x00\x00\x01z"
    blob = (11 + len(body)).to_bytes(4, "little") + (10).to_bytes(4, "little") + b"\x01\x00" + body + b"\xff"
    assert decode_ziplist(blob) == [b"z"]


def test_empty_ziplist_zltail_is_only_bounded() -> None:
    # Redis 7.0 accepts an empty quicklist node whose zltail is anywhere inside the blob.
    assert decode_ziplist(bytes.fromhex("0b000000" "03000000" "0000" "ff")) == []


def test_encoder_rejects_what_redis_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_ziplist([1 << 63])


def patched(blob: bytes, at: int, value: int) -> bytes:
    """``blob`` with the byte at ``at`` set to ``value``."""
    return blob[:at] + bytes((value,)) + blob[at + 1:]


def raises(blob: bytes, match: str, offset: int | None = None) -> RdbError:
    start = time.perf_counter()
    with pytest.raises(RdbError, match=match) as info:
        decode_ziplist(blob)
    assert time.perf_counter() - start < 0.1
    assert info.value.message.startswith("ziplist: ")
    if offset is not None:
        assert info.value.offset == offset
    return info.value


def test_header_checks() -> None:
    good = encode_ziplist([b"abc", 100])  # 00 03 "abc" | 05 fe 64 | ff
    raises(good[:10], "too short", 0)
    raises(b"\xff\xff\xff\xff" + good[4:], "header says 4294967295 bytes but the blob has 19", 0)
    raises(good[:-1] + b"\x00", "not the 0xFF terminator", 18)
    raises(good[:4] + (19).to_bytes(4, "little") + good[8:], "zltail 19 is past the end", 4)
    raises(good[:4] + (10).to_bytes(4, "little") + good[8:], "zltail is 10 but the last entry is at 15", 4)
    raises(good[:8] + b"\x01\x00" + good[10:], "header says 1 entries but there are 2", 8)


def test_iter_checks_the_header_before_yielding() -> None:
    with pytest.raises(RdbError):
        iter_ziplist(b"\x00" * 20)


def test_entry_checks() -> None:
    good = encode_ziplist([b"abc", 100])
    raises(patched(good, 15, 4), "entry at 15 has prevlen 4, expected 5", 15)
    raises(patched(good, 10, 1), "entry at 10 has prevlen 1, expected 0", 10)  # the first prevlen
    raises(patched(good, 15, 0xFF), "terminator at 15 but the blob ends at 18", 15)  # early end
    for byte in (0xC1, 0xD7, 0xE8, 0xFF):
        raises(patched(good, 16, byte), f"entry at 15 has invalid encoding byte 0x{byte:02x}", 16)


def test_lying_lengths_fail_fast() -> None:
    # A 1 GB string in a 20-byte blob, in the 32-bit form.
    blob = (20).to_bytes(4, "little") + (10).to_bytes(4, "little") + b"\x01\x00" + b"\x00\x80" + \
        (1 << 30).to_bytes(4, "big") + b"\x00\x00\x00\xff"
    assert len(blob) == 20
    raises(blob, r"entry at 10 runs past the end \(length 1073741830, 9 bytes left\)", 10)
    # The 32-bit header itself cut by the terminator, and a 5-byte prevlen with no room.
    raises((14).to_bytes(4, "little") + (10).to_bytes(4, "little") + b"\x01\x00\x00\x80\x01\xff",
           "entry header at 10 runs past the end", 10)
    raises((14).to_bytes(4, "little") + (10).to_bytes(4, "little") + b"\x01\x00\xfe\x00\x00\xff",
           "entry header at 10 runs past the end", 10)
    # An entry whose encoding byte would be the terminator.
    raises((12).to_bytes(4, "little") + (10).to_bytes(4, "little") + b"\x01\x00\x00\xff",
           "entry header at 10 runs past the end", 10)
    # A 14-bit string length of 16383.
    raises((17).to_bytes(4, "little") + (10).to_bytes(4, "little") + b"\x01\x00\x00\x7f\xffabc\xff",
           "runs past the end", 10)


def test_only_rdb_errors_from_every_truncation_and_byte_flip() -> None:
    good = encode_ziplist([b"x" * 300, -5000, 1 << 40, b"", b"abc", 3, 100])
    for cut in range(len(good)):
        with pytest.raises(RdbError):
            decode_ziplist(good[:cut])
    for i in [*range(0, 30), *range(300, len(good))]:
        for value in (0x00, 0x3F, 0x40, 0x80, 0xC0, 0xF1, 0xFE, 0xFF):
            blob = patched(good, i, value)
            try:
                decode_ziplist(blob)
            except RdbError as exc:
                assert exc.offset is not None and 0 <= exc.offset < len(blob)
