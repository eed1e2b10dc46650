"""The fast run scanner sees exactly what the general reader sees, and fails the same way."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snaptool.errors import RdbError
from snaptool.rdb import fastscan
from snaptool.rdb.fastscan import SCANNABLE, Run, type_mask
from snaptool.rdb.items import Record
from snaptool.rdb.reader import RdbReader

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpora"
FILES = sorted(ROOT.glob("fixtures/*.rdb")) + sorted(CORPUS.glob("**/*.rdb"))
MASK = type_mask(SCANNABLE)


def _row(r: Record) -> tuple:
    raw = r.raw if isinstance(r.raw, bytes) else r.raw.getvalue()
    return r.db, r.key, r.type, r.expire_ms, r.idle, r.freq, raw


def general(data: bytes) -> list:
    return [_row(i) for i in RdbReader(io.BytesIO(data), verify_checksum=False).items() if type(i) is Record]


def fast(data: bytes) -> list:
    rows, runs = [], 0
    for item in RdbReader(io.BytesIO(data), verify_checksum=False).items(fast=MASK):
        if type(item) is Run:
            runs += 1
            inner = RdbReader(io.BytesIO(data[:9] + item.raw + b"\xff" + bytes(8))).items()
            rows += [(item.db, *_row(r)[1:]) for r in inner if type(r) is Record]
        elif type(item) is Record:
            rows.append(_row(item))
    return rows


def outcome(reader_fn, data: bytes) -> tuple:
    try:
        return ("ok", reader_fn(data))
    except RdbError as exc:
        return ("error", type(exc), exc.offset)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_runs_hold_exactly_the_records(path: Path) -> None:
    data = path.read_bytes()
    assert outcome(fast, data) == outcome(general, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_fail_the_same_way(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(sorted(ROOT.glob("fixtures/*.rdb"))))
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(9, len(blob) - 1))] = data.draw(st.integers(0, 255))
    assert outcome(fast, bytes(blob)) == outcome(general, bytes(blob))


needs_c = pytest.mark.skipif(fastscan._c_scan_run is None, reason="C run scanner not built")


def _both(buf: bytes, pos: int, mask: bytes, threshold: int) -> tuple:
    results = []
    for impl in (fastscan.scan_run, fastscan.scan_run_python):
        stats = fastscan.ScanStats(big_threshold=threshold)
        end, keys, expires, big = impl(buf, pos, mask, stats)
        results.append((end, keys, expires, big, stats.type_keys, stats.type_bytes, stats.idle, stats.freq))
    return tuple(results)


@needs_c
@pytest.mark.parametrize("path", sorted(ROOT.glob("fixtures/*.rdb")), ids=lambda p: p.name)
def test_c_loop_equals_python_loop_at_every_offset(path: Path) -> None:
    """Both loops agree from every starting byte, record boundary or not."""
    data = path.read_bytes()
    for pos in range(0, len(data), 3):
        c, py = _both(data, pos, MASK, 200)
        assert c == py, pos


@needs_c
@settings(max_examples=500, deadline=None)
@given(blob=st.binary(max_size=300), mask=st.binary(min_size=256, max_size=256), threshold=st.integers(0, 64))
def test_c_loop_equals_python_loop_on_noise(blob: bytes, mask: bytes, threshold: int) -> None:
    mask = type_mask({t for t in range(256) if mask[t] & 1})
    for pos in range(0, len(blob) + 1, 5):
        c, py = _both(blob, pos, mask, threshold)
        assert c == py, pos


def test_python_loop_reads_runs_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the C extension the reader's runs still hold exactly the records."""
    monkeypatch.setattr(fastscan, "_c_scan_run", None)
    for path in sorted(ROOT.glob("fixtures/*.rdb")):
        data = path.read_bytes()
        assert outcome(fast, data) == outcome(general, data)


OWNER3 = bytes(slot * 3 // 16384 for slot in range(16384))


def _routed(impl, buf: bytes, pos: int) -> tuple:
    stats = fastscan.ScanStats()
    route = fastscan.Route.for_shards(OWNER3, 3)
    result = impl(buf, pos, MASK, stats, route, 3)
    return result, stats.type_keys, route.outs, route.keys, route.expires, route.seen


@needs_c
@pytest.mark.parametrize("path", sorted(ROOT.glob("fixtures/*.rdb")), ids=lambda p: p.name)
def test_c_and_python_route_records_alike(path: Path) -> None:
    data = path.read_bytes()
    for pos in range(0, len(data), 7):
        assert _routed(fastscan.scan_run, data, pos) == _routed(fastscan.scan_run_python, data, pos), pos


def test_routed_records_land_in_the_shard_of_their_slot() -> None:
    from snaptool.rdb.checksum import key_slot
    data = (ROOT / "fixtures" / "redis-7.0.rdb").read_bytes()
    reader = RdbReader(io.BytesIO(data))
    routed = 0
    for item in reader.items(fast=MASK):
        if type(item) is Run:
            _, stats, outs, keys, _, seen = _routed(fastscan.scan_run, item.raw, 0)
            assert sum(keys) == item.keys
            for shard, out in enumerate(outs):
                for record in RdbReader(io.BytesIO(data[:9] + bytes(out) + b"\xff" + bytes(8))).records():
                    assert OWNER3[key_slot(record.key)] == shard
                    assert seen[3][key_slot(record.key)] == 1
                    routed += 1
    assert routed > 100
