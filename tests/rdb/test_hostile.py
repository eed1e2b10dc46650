"""Bad input gets a clear RdbError with an offset, and never a crash or a huge allocation.

Inputs: the engine-made fixtures truncated at every offset of interest, randomly mutated
(hypothesis), and hand-made files whose length fields lie.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snaptool.errors import ChecksumError, RdbError, UnsupportedError
from snaptool.rdb.checksum import crc64
from snaptool.rdb.items import Record
from snaptool.rdb.reader import RdbReader

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SAMPLES = sorted(FIXTURES.glob("*.rdb"))


def read_everything(data: bytes, verify_checksum: bool = True) -> int:
    """Parse every item and decode every value; returns the number of records."""
    n = 0
    for item in RdbReader(io.BytesIO(data), verify_checksum=verify_checksum).items():
        if isinstance(item, Record):
            item.value()
            n += 1
    return n


def with_crc(body: bytes) -> bytes:
    return body + crc64(body).to_bytes(8, "little")


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_truncation_is_a_clean_error(path: Path) -> None:
    data = path.read_bytes()
    assert read_everything(data) > 0
    cuts = sorted(set(range(0, min(len(data), 600))) | set(range(600, len(data), 97)) | {len(data) - 1})
    for cut in cuts:
        with pytest.raises(RdbError) as info:
            read_everything(data[:cut])
        assert info.value.offset is not None and info.value.offset <= cut


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_fail_cleanly(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(SAMPLES))
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(9, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    try:
        read_everything(bytes(blob), verify_checksum=False)
    except RdbError as exc:
        assert exc.offset is not None


def test_checksum_mismatch_is_reported_and_can_be_overridden() -> None:
    data = bytearray(SAMPLES[0].read_bytes())
    data[-1] ^= 0xFF
    with pytest.raises(ChecksumError, match="CRC-64 mismatch"):
        read_everything(bytes(data))
    assert read_everything(bytes(data), verify_checksum=False) > 0


def test_zero_checksum_means_disabled() -> None:
    data = SAMPLES[0].read_bytes()
    items = list(RdbReader(io.BytesIO(data[:-8] + bytes(8))).items())
    assert items[-1].status == "disabled"


LYING = {
    # a string value claiming 2^60 bytes
    "string-length": b"REDIS0009\x00\x01k\x81" + (1 << 60).to_bytes(8, "big") + b"abc\xff",
    # a set claiming 2^62 members
    "set-count": b"REDIS0009\x02\x01k\x81" + (1 << 62).to_bytes(8, "big") + b"\x01a\xff",
    # LZF string claiming 2 GB from 5 compressed bytes
    "lzf-length": b"REDIS0009\x00\x01k\xc3\x05\x80\x80\x00\x00\x00\x00aaaa\xff",
    # listpack hash whose header claims 4 GB
    "listpack-total": b"REDIS0010\x10\x01k\x0b\xff\xff\xff\xff\x01\x00\x81a\x02\xff\xff\xff",
    # quicklist with 2^40 nodes
    "quicklist-nodes": b"REDIS0010\x12\x01k\x81" + (1 << 40).to_bytes(8, "big") + b"\x02\x01a\xff",
    # stream with a PEL claiming 2^50 entries
    "stream-pel": b"REDIS0009\x0f\x01k\x00\x00\x00\x00\x01\x01g\x00\x00\x81" + (1 << 50).to_bytes(8, "big"),
}


@pytest.mark.parametrize("name", sorted(LYING))
def test_lying_lengths_fail_without_allocating(name: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RdbError) as info:
            read_everything(with_crc(LYING[name]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.offset is not None
    assert peak < 16 << 20, f"{name}: allocated {peak} bytes"


@pytest.mark.parametrize("body,message", [
    (b"REDIS0009\xf0", "unknown type 240"),
    (b"REDIS0009\xf2", "opcode 242"),
    (b"REDIS0012\x1a\x01k", "type 26"),
    (b"REDIS0013\xf3\x00", "opcode 243"),
    (b"VALKEY080\x17\x01k", "unknown type 23"),
    (b"REDIS0009\x08\x01k", "unknown type 8"),
])
def test_unknown_types_and_opcodes_are_refused_with_offset(body: bytes, message: str) -> None:
    with pytest.raises(UnsupportedError, match=message) as info:
        read_everything(body)
    assert info.value.offset == 9


@pytest.mark.parametrize("magic", [b"REDIS0099", b"REDIS0000", b"VALKEY079", b"VALKEY099", b"RADIS0009", b"REDIS"])
def test_bad_headers(magic: bytes) -> None:
    with pytest.raises(RdbError) as info:
        read_everything(magic + b"\xff")
    assert info.value.offset == 0


def test_empty_input() -> None:
    with pytest.raises(RdbError, match="empty"):
        read_everything(b"")
