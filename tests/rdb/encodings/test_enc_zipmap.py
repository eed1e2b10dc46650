"""Zipmap codec: the Redis 2.4 layout, free bytes, and hostile blobs (RDB format §5.4)."""

from __future__ import annotations

import pytest

from snaptool.errors import RdbError
from snaptool.rdb.encodings.zipmap import decode_zipmap, encode_zipmap, iter_zipmap


def test_known_vector() -> None:
    # zmlen 2 | len 3 "foo" len 3 free 0 "baz" | len 1 "a" len 0 free 0 | end
    blob = bytes.fromhex("02" "03666f6f" "0300" "62617a" "0161" "0000" "ff")
    pairs = [(b"foo", b"baz"), (b"a", b"")]
    assert encode_zipmap(pairs) == blob
    assert decode_zipmap(blob) == pairs


def test_free_bytes_are_skipped() -> None:
    blob = bytes.fromhex("02" "0161" "0102" "62" "7878" "0163" "0000" "ff")
    assert decode_zipmap(blob) == [(b"a", b"b"), (b"c", b"")]


@pytest.mark.parametrize("length", [0, 1, 253, 254, 255, 70000])
def test_length_forms(length: int) -> None:
    data = b"d" * length
    blob = encode_zipmap([(data, data)])
    if length < 254:
        assert blob[1] == length
    else:
        assert blob[1:6] == b"\xfe" + length.to_bytes(4, "little")
    assert decode_zipmap(blob) == [(data, data)]


def test_count_sentinel() -> None:
    pairs = [(b"f%d" % i, b"v") for i in range(300)]
    blob = encode_zipmap(pairs)
    assert blob[0] == 254
    assert decode_zipmap(blob) == pairs
    assert encode_zipmap(pairs[:253])[0] == 253
    assert encode_zipmap(pairs[:254])[0] == 254
    # 254 means "count by walking", so it fits any count.
    assert decode_zipmap(b"\xfe" + encode_zipmap(pairs[:3])[1:]) == pairs[:3]


def test_redis_compatible_leniency() -> None:
    # Redis reads any length byte from 254 up as "u32 follows" in a value, and ignores bytes after
    # the end marker (checked on 6.2 and 7.0).
    value = b"v" * 300
    blob = b"\x01\x01a\xff" + (300).to_bytes(4, "little") + b"\x00" + value + b"\xff"
    assert decode_zipmap(blob) == [(b"a", value)]
    assert decode_zipmap(b"\x01\x01a\x01\x00b\xff\x01\x02\xff") == [(b"a", b"b")]


def test_encoder_rejects_empty() -> None:
    with pytest.raises(ValueError):
        encode_zipmap([])


@pytest.mark.parametrize("blob,match,offset", [
    (b"", "too short", 0),
    (b"\xff", "too short", 0),
    (b"\x01\x01a\x01\x00b\x00", "not the 0xFF terminator", 6),
    (b"\x00\xff", r"no pairs", 1),
    (b"\x02\x01a\x01\x00b\xff", "header says 2 pairs but there are 1", 0),
    (b"\xff\x01a\x01\x00b\xff", "header says 255 pairs but there are 1", 0),
    (b"\x01\x05a\x01\x00b\xff", r"field at 1 runs past the end \(length 5", 1),
    (b"\x01\x01a\x05\x00b\xff", "value at 3 runs past the end", 3),
    (b"\x01\x01a\x01\x09b\xff", r"value at 3 runs past the end \(length 1 \+ 9 free", 3),
    (b"\x01\x01a\xff", "value length at 3 runs past the end", 3),
    (b"\x01\x01a\x01\xff", "value at 3 runs past the end", 3),
    (b"\x01\xfe\x00\x00\x00\x40" + b"\x00" * 10 + b"\xff", "field at 1 runs past the end", 1),
    (b"\x01\xfe\xff\xff\xff\xff\xff", "field at 1 runs past the end", 1),
    (b"\x01\xfe\x01\x00\xff", "field length at 1 runs past the end", 1),
    (b"\x01\xfe\x01\x00\x00\x00a\x01\x00b\xff", "field length at 1 stores 1 in the 5-byte form", 1),
    (b"\x01\x01a\xfe\x01\x00\x00\x00\x00b\xff", "value length at 3 stores 1 in the 5-byte form", 3),
])
def test_hostile(blob: bytes, match: str, offset: int) -> None:
    with pytest.raises(RdbError, match=match) as info:
        decode_zipmap(blob)
    assert info.value.message.startswith("zipmap: ")
    assert info.value.offset == offset


def test_iter_checks_the_header_before_yielding() -> None:
    with pytest.raises(RdbError):
        iter_zipmap(b"\x01\x01")
