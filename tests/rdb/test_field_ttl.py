"""Hash field TTLs across flavours: Redis 7.4 types 24/25 and 22/23 (pre-GA) ⇄ Valkey 9 HASH_2.

No engine here loads RDB 12 or VALKEY080, so these check that each conversion keeps every field,
value and field TTL (decoding the written file again) and writes the type each engine writes
itself (the reference's verified byte layouts); the corpus files made by Redis 7.4 and Valkey 9
are checked against what those engines returned in tests/rdb/test_corpus.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from snaptool.errors import LossyConversionError
from snaptool.jobs.convert import convert_stream
from snaptool.rdb import constants as C
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.targets import parse_target

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "redis__librdb" / "test" / "dumps"
T0 = 2051222400000
SMALL = [(b"f1", b"v1", T0 + 5), (b"f2", b"v2", None), (b"f3", b"v3", T0 + 1)]
LARGE = [(f"f{i}".encode(), b"v" * 80, T0 + i if i % 3 else None) for i in range(600)]


def build(target: str) -> bytes:
    out = io.BytesIO()
    builder = RdbBuilder(out, parse_target(target))
    builder.add(b"small", "hash", SMALL)
    builder.add(b"large", "hash", LARGE)
    builder.add(b"plain", "hash", [(b"a", b"b", None)])
    builder.finish()
    return out.getvalue()


def contents(data: bytes) -> dict:
    return {r.key: (r.type, sorted(r.value(), key=lambda t: t[0]))
            for r in RdbReader(io.BytesIO(data)).records()}


def convert(data: bytes, target: str, **kwargs) -> bytes:
    out = io.BytesIO()
    convert_stream(io.BytesIO(data), out, parse_target(target), **kwargs)
    return out.getvalue()


def test_redis74_writes_the_engine_types() -> None:
    got = contents(build("redis-7.4"))
    assert got[b"small"][0] == C.T_HASH_LISTPACK_EX and got[b"large"][0] == C.T_HASH_METADATA
    assert got[b"plain"][0] == C.T_HASH_LISTPACK
    assert got[b"small"][1] == sorted(SMALL) and got[b"large"][1] == sorted(LARGE)


def test_valkey9_writes_hash2_for_volatile_fields_only() -> None:
    data = build("valkey-9.0")
    assert data.startswith(b"VALKEY080")
    got = contents(data)
    assert got[b"small"][0] == got[b"large"][0] == C.T_VALKEY_HASH_2
    assert got[b"plain"][0] == C.T_HASH_LISTPACK
    assert got[b"small"][1] == sorted(SMALL) and got[b"large"][1] == sorted(LARGE)


@pytest.mark.parametrize("source,target", [("redis-7.4", "valkey-9.0"), ("valkey-9.0", "redis-7.4")])
def test_field_ttls_cross_flavours(source: str, target: str) -> None:
    converted = convert(build(source), target)
    assert contents(converted) == contents(build(target))


@pytest.mark.parametrize("target", ["valkey-8.1", "redis-7.0", "redis-6.2", "rdb-4"])
def test_older_targets_refuse_then_drop_only_the_ttls(target: str) -> None:
    data = build("redis-7.4")
    with pytest.raises(LossyConversionError) as info:
        convert(data, target)
    assert sorted(info.value.keys) == [b"large", b"small"]
    got = contents(convert(data, target, allow_lossy=True))
    assert got[b"small"][1] == sorted((f, v, None) for f, v, _ in SMALL)
    assert got[b"large"][1] == sorted((f, v, None) for f, v, _ in LARGE)


@pytest.mark.parametrize("name", ["hash_with_expire_v12.rdb", "hash_lp_with_hexpire_v12.rdb"])
def test_pre_ga_types_are_rewritten_as_ga(name: str) -> None:
    path = CORPUS / name
    if not path.exists():
        pytest.skip("shared corpus not present")
    data = path.read_bytes()
    before = contents(data)
    assert any(e is not None for _, values in before.values() for _, _, e in values)
    after = contents(convert(data, "redis-7.4"))
    assert {k: v for k, (_, v) in after.items()} == {k: v for k, (_, v) in before.items()}
    assert all(t in (C.T_HASH_LISTPACK_EX, C.T_HASH_METADATA) for t, _ in after.values())
