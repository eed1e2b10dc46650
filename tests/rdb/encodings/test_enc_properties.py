"""Property tests for all four inner encodings: round trips, and mutated blobs that must only ever
produce a value or an RdbError (never IndexError, struct.error, MemoryError, ...)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from snaptool.errors import RdbError
from snaptool.rdb.encodings.intset import decode_intset, encode_intset
from snaptool.rdb.encodings.listpack import decode_listpack, encode_listpack, listpack_entry_size
from snaptool.rdb.encodings.ziplist import decode_ziplist, encode_ziplist
from snaptool.rdb.encodings.zipmap import decode_zipmap, encode_zipmap
from snaptool.rdb.primitives import canonical_int

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

int64s = st.integers(-(1 << 63), (1 << 63) - 1)
small_ints = st.integers(-70000, 70000)
strings = st.one_of(st.binary(max_size=80), st.binary(min_size=4090, max_size=4100),
                    small_ints.map(lambda i: b"%d" % i), st.sampled_from([b"-0", b"007", b"+1", b"-", b""]))
elements = st.one_of(int64s, small_ints, strings)
element_lists = st.lists(elements, max_size=12)


def normalise(item: bytes | int) -> bytes | int:
    """What a decoder returns for an encoded item: canonical integer strings come back as int."""
    if isinstance(item, int):
        return item
    value = canonical_int(item)
    return item if value is None else value


@SETTINGS
@given(element_lists)
def test_listpack_round_trip(items: list[bytes | int]) -> None:
    blob = encode_listpack(items)
    assert decode_listpack(blob) == [normalise(i) for i in items]
    assert len(blob) == 7 + sum(listpack_entry_size(i) for i in items)


@SETTINGS
@given(element_lists)
def test_ziplist_round_trip(items: list[bytes | int]) -> None:
    assert decode_ziplist(encode_ziplist(items)) == [normalise(i) for i in items]


@SETTINGS
@given(st.sets(int64s, min_size=1, max_size=50))
def test_intset_round_trip(values: set[int]) -> None:
    assert decode_intset(encode_intset(values)) == sorted(values)


@SETTINGS
@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), min_size=1, max_size=8))
def test_zipmap_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    assert decode_zipmap(encode_zipmap(pairs)) == pairs


@st.composite
def mutated(draw: st.DrawFn, blob: bytes) -> bytes:
    """A valid blob with a few random edits: byte flips, truncation, extension, cut-outs, lying counts."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "xor", "truncate", "extend", "delete", "insert", "header"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xD0, 0xE0, 0xEF,
                                             0xF0, 0xF1, 0xF4, 0xF5, 0xFD, 0xFE, 0xFF]))
        elif op == "xor" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 6))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif op == "header":
            # Rewrite a header field (byte count, tail or element count) with a lie, or with the truth
            # after another edit, so the walk itself gets exercised.
            field = draw(st.sampled_from([(0, 4), (4, 4), (4, 2), (8, 2), (0, 1)]))
            value = draw(st.sampled_from([len(data), 0, 1, 2, 65535, 0xFFFFFFFF, draw(st.integers(0, 300))]))
            start, size = field
            if start + size <= len(data):
                data[start:start + size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
    return bytes(data)


def check_decoder(decode: Callable[[bytes], object], blob: bytes) -> None:
    try:
        decode(blob)
    except RdbError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(blob)
        assert "\n" not in exc.message


def with_true_size(blob: bytes) -> bytes:
    """Fix the u32 byte count after the edits so the damage is found by the entry walk, not the header check."""
    return len(blob).to_bytes(4, "little") + blob[4:] if len(blob) >= 4 else blob


@pytest.mark.parametrize("encode,decode", [(encode_listpack, decode_listpack), (encode_ziplist, decode_ziplist)],
                         ids=["listpack", "ziplist"])
@SETTINGS
@given(st.data())
def test_mutated_element_lists(encode: Callable[[list], bytes], decode: Callable[[bytes], object],
                               data: st.DataObject) -> None:
    blob = data.draw(mutated(encode(data.draw(element_lists))))
    check_decoder(decode, blob)
    check_decoder(decode, with_true_size(blob))


@SETTINGS
@given(st.data())
def test_mutated_intsets(data: st.DataObject) -> None:
    values = data.draw(st.sets(st.one_of(small_ints, int64s), min_size=1, max_size=20))
    check_decoder(decode_intset, data.draw(mutated(encode_intset(values))))


@SETTINGS
@given(st.data())
def test_mutated_zipmaps(data: st.DataObject) -> None:
    pairs = data.draw(st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=20)), min_size=1, max_size=6))
    check_decoder(decode_zipmap, data.draw(mutated(encode_zipmap(pairs))))


@SETTINGS
@given(st.binary(max_size=64))
def test_random_bytes(blob: bytes) -> None:
    for decode in (decode_listpack, decode_ziplist, decode_intset, decode_zipmap):
        check_decoder(decode, blob)
