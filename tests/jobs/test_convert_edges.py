"""Conversions at the edges: hostile values met while re-encoding, old targets, empty keys."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from snaptool.errors import LossyConversionError, RdbError
from snaptool.jobs.convert import convert_stream
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.checksum import crc64
from snaptool.rdb.encodings.listpack import encode_listpack
from snaptool.rdb.encodings.ziplist import iter_ziplist
from snaptool.rdb.items import Record
from snaptool.rdb.model import StreamEntry, StreamValue
from snaptool.rdb.primitives import encode_length, encode_ms_time, encode_raw_string, encode_string
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.targets import parse_target
from snaptool.rdb.values import value_source


def rdb(version: bytes, *records: bytes) -> bytes:
    body = version + b"".join(records) + b"\xff"
    return body + crc64(body).to_bytes(8, "little")


def convert(data: bytes, target: str, **kwargs):
    out = io.BytesIO()
    report = convert_stream(io.BytesIO(data), out, parse_target(target), **kwargs)
    return report, out.getvalue()


def records(data: bytes) -> list[Record]:
    return list(RdbReader(io.BytesIO(data)).records())


def test_duplicate_set_members_are_refused_when_re_encoding() -> None:
    data = rdb(b"REDIS0011", b"\x14" + encode_string(b"s") + encode_raw_string(encode_listpack([b"1", b"1"])))
    with pytest.raises(RdbError, match="duplicate set member") as info:
        convert(data, "rdb-9")
    assert info.value.key == b"s" and info.value.offset == 9


def test_field_expiry_out_of_range_is_refused() -> None:
    data = rdb(b"REDIS0012", b"\x18" + encode_string(b"h") + encode_ms_time(1000) + encode_length(1)
               + encode_length((1 << 64) - 1) + encode_string(b"f") + encode_string(b"v"))
    with pytest.raises(RdbError, match="outside 1"):
        convert(data, "valkey-9.0")


def test_expiry_beyond_32_bit_seconds_is_lossy_for_rdb_2() -> None:
    data = rdb(b"REDIS0009", b"\xfc" + encode_ms_time(-(1 << 62)) + b"\x00" + encode_string(b"k")
               + encode_string(b"v"))
    with pytest.raises(LossyConversionError, match="32-bit seconds"):
        convert(data, "rdb-2")
    report, out = convert(data, "rdb-2", allow_lossy=True)
    (record,) = records(out)
    assert record.expire_ms is None and record.value() == b"v"


def test_selectdb_beyond_any_engine_is_refused() -> None:
    with pytest.raises(RdbError, match="SELECTDB"):
        list(RdbReader(io.BytesIO(rdb(b"REDIS0009", b"\xfe\x81" + (1 << 40).to_bytes(8, "big")))).items())


def test_stream_with_ids_far_apart_splits_nodes() -> None:
    value = StreamValue(entries=[StreamEntry((0, 0), [(b"a", b"1")]), StreamEntry(((1 << 64) - 2, 0), [(b"a", b"2")])],
                        length=2, last_id=((1 << 64) - 2, 0))
    out = io.BytesIO()
    builder = RdbBuilder(out, parse_target("redis-7.0"))
    builder.add(b"s", "stream", value)
    builder.finish()
    (record,) = records(out.getvalue())
    assert [e.id for e in record.value().entries] == [(0, 0), ((1 << 64) - 2, 0)]


def test_rdb_2_to_5_ziplists_use_only_old_integer_forms() -> None:
    """A v9 ziplist hash holding small integers is rewritten for RDB 4 with int16 entries."""
    from snaptool.rdb.encodings.ziplist import encode_ziplist
    data = rdb(b"REDIS0009", b"\x0d" + encode_string(b"h") + encode_raw_string(encode_ziplist([b"f", b"5", b"g", b"-3"])))
    report, out = convert(data, "rdb-4")
    assert report.reencoded == 1
    (record,) = records(out)
    blob = value_source(record).string()
    entries = blob[10:-1]
    assert b"\xf6" not in entries and b"\xfe" not in entries  # no immediate 5, no int8 -3
    assert list(iter_ziplist(blob)) == [b"f", 5, b"g", -3]
    assert record.value() == [(b"f", b"5", None), (b"g", b"-3", None)]


def test_lists_of_empty_nodes_are_dropped() -> None:
    empty_node = b"\x02" + encode_raw_string(encode_listpack([]))
    data = rdb(b"REDIS0010", b"\x12" + encode_string(b"l") + encode_length(4) + empty_node * 4,
               b"\x00" + encode_string(b"k") + encode_string(b"v"))
    for target in ("redis-7.0", "redis-6.2"):
        report, out = convert(data, target)
        assert report.empty_skipped == 1
        assert [r.key for r in records(out)] == [b"k"]


def test_functions_refused_by_old_writers() -> None:
    with pytest.raises(Exception, match="cannot hold functions"):
        RdbBuilder(io.BytesIO(), parse_target("redis-6.2"), functions=[b"#!lua name=x\n"])


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "redis-7.0.rdb"
    result = subprocess.run([sys.executable, "-m", "snaptool", "convert", str(fixture), "-o",
                             str(tmp_path / "missing" / "x.rdb")], capture_output=True, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
