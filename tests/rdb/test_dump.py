"""DUMP/RESTORE payloads built from RDB records (snaptool.rdb.dump).

Layout checks need no engine. Against live engines, every record of every fixture is RESTOREd
from its payload into an empty node of each engine that loads the fixture, and must have the
``DEBUG DIGEST-VALUE`` of the same key in a node of that engine started on the fixture file.
In the engine that wrote the fixture the payload also equals the engine's own ``DUMP`` byte for
byte, except for hashtable-encoded sets and hashes: those are saved in dict iteration order,
which depends on the table's insertion history, so the engine's DUMP after loading may list the
same members in another order.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
import redis

from snaptool.engines.discovery import find_engines
from snaptool.engines.server import EngineServer
from snaptool.errors import LossyConversionError, RdbError, SnaptoolError
from snaptool.jobs.convert import convert
from snaptool.rdb import constants as C
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.checksum import crc64
from snaptool.rdb.dump import (FOOTER_SIZE, dump_version, open_payload, payload_chunks, payload_for,
                               split_payload)
from snaptool.rdb.encoder import Encoded
from snaptool.rdb.primitives import encode_length
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.source import Spill
from snaptool.rdb.targets import parse_target
from snaptool.rdb.writer import RdbWriter

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ENGINES = {e.target_name: e for e in find_engines()}


def rdb_version(path: Path) -> int:
    with RdbReader.open(path) as reader:
        return reader.read_header().version


#: fixtures, each named after the engine that wrote it
WRITTEN_BY = ("redis-6.2", "redis-7.0", "valkey-8.1")
#: (fixture, engine) where the engine loads the fixture: its writer and every newer engine
PAIRS = [(f, e) for f in WRITTEN_BY for e in ENGINES
         if ENGINES[e].can_load(rdb_version(FIXTURES / f"{f}.rdb"))]
HASHTABLE = {(C.T_SET, "hashtable"), (C.T_HASH, "hashtable")}


def records(path: Path, **kwargs) -> list:
    with RdbReader.open(path, **kwargs) as reader:
        return list(reader.records())


def digest_values(client: redis.Redis, db: int, keys: list[bytes]) -> list[bytes]:
    client.execute_command("SELECT", db)
    return list(client.execute_command("DEBUG", "DIGEST-VALUE", *keys))


# -- layout, no engine --------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", WRITTEN_BY)
def test_payload_layout(fixture: str) -> None:
    """Type byte, the record's value bytes, the target's RDB version and a CRC-64 over the rest."""
    target = parse_target(fixture)
    for record in records(FIXTURES / f"{fixture}.rdb"):
        payload = payload_for(record, target)
        type_, value, version = split_payload(payload)
        assert type_ == record.type
        assert value == record.value_bytes()
        assert version == target.rdb_version
        assert int.from_bytes(payload[-8:], "little") == crc64(payload[:-8])
        assert b"".join(payload_chunks(record, target, size=7)) == payload


def test_dump_version_is_the_targets_own() -> None:
    """What each engine's DUMP writes: Valkey 9 its 80 (12-79 is refused there as foreign)."""
    assert [dump_version(parse_target(n)) for n in ("redis-6.2", "redis-7.0", "redis-7.4", "valkey-8.1",
                                                     "valkey-9.0")] == [9, 10, 12, 11, 80]


def test_split_payload_refuses_bad_crc() -> None:
    record = records(FIXTURES / "redis-7.0.rdb")[0]
    payload = bytearray(payload_for(record, parse_target("redis-7.0")))
    payload[1] ^= 1
    with pytest.raises(RdbError, match="CRC-64"):
        split_payload(bytes(payload))
    with pytest.raises(RdbError, match="too short"):
        split_payload(b"\0" * FOOTER_SIZE)


def test_spilled_records_stream_the_same_payload(tmp_path: Path) -> None:
    """A record read back from its spill file gives the bytes it gives from memory, in bounded chunks."""
    path = tmp_path / "big.rdb"
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-7.0"))
        rng = random.Random(5)
        builder.add(b"big:list", "list", [rng.randbytes(500) for _ in range(12000)])  # ~6 MB
        builder.add(b"big:string", "string", rng.randbytes(5 << 20))
        builder.add(b"small", "string", b"x")
        builder.finish()
    in_memory = records(path)
    spilled = records(path, spill_threshold=64 << 10)
    assert [isinstance(r.raw, Spill) for r in spilled] == [True, True, False]
    for target in (parse_target("redis-7.0"), parse_target("redis-6.2")):  # copied, then re-encoded
        for mem, disk in zip(in_memory, spilled):
            want = payload_for(mem, target)
            chunks = list(payload_chunks(disk, target, size=1 << 16))
            assert b"".join(chunks) == want
            assert max(len(c) for c in chunks) <= 1 << 16
            payload = open_payload(disk, target)
            assert payload is not None and payload.size == len(want) == len(b"".join(payload.chunks()))
    for record in spilled:
        record.release()


def test_field_ttls_need_allow_lossy_before_rdb_12() -> None:
    out = io.BytesIO()
    builder = RdbBuilder(out, parse_target("redis-7.4"))
    builder.add(b"h", "hash", [(b"f1", b"v1", 2051222400000), (b"f2", b"v2", None)])
    builder.finish()
    record = next(RdbReader(io.BytesIO(out.getvalue())).records())
    old = parse_target("redis-6.2")
    with pytest.raises(LossyConversionError, match="field TTLs"):
        payload_for(record, old)
    type_, _, version = split_payload(payload_for(record, old, allow_lossy=True))
    assert (type_, version) == (C.T_HASH_ZIPLIST, 9)
    assert split_payload(payload_for(record, parse_target("redis-7.4")))[0] == record.type


def test_empty_collection_has_no_payload() -> None:
    out = io.BytesIO()
    writer = RdbWriter(out, parse_target("redis-7.0"))
    writer.header()
    writer.value(b"empty", Encoded(C.T_SET, [encode_length(0)]))
    writer.finish()
    record = next(RdbReader(io.BytesIO(out.getvalue())).records())
    assert open_payload(record, parse_target("redis-7.0")) is None
    with pytest.raises(SnaptoolError, match="empty collection"):
        payload_for(record, parse_target("redis-7.0"))


# -- live engines -------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture,engine", PAIRS, ids=[f"{f}->{e}" for f, e in PAIRS])
def test_payloads_restore_like_the_file(fixture: str, engine: str) -> None:
    path = FIXTURES / f"{fixture}.rdb"
    target = parse_target(engine)
    recs = records(path)
    with EngineServer(ENGINES[engine], rdb=path) as loaded, EngineServer(ENGINES[engine]) as empty:
        src, dst = loaded.client(), empty.client()
        payloads = {}
        for record in recs:
            payloads[record.db, record.key] = payload = payload_for(record, target)
            dst.execute_command("SELECT", record.db)
            assert dst.execute_command("RESTORE", record.key, record.expire_ms or 0, payload,
                                       *(["ABSTTL"] if record.expire_ms else [])) == b"OK"
        for db in sorted({r.db for r in recs}):
            keys = [r.key for r in recs if r.db == db]
            assert digest_values(dst, db, keys) == digest_values(src, db, keys)
            assert dst.dbsize() == len(keys)
        if engine != fixture:
            return
        differ = []
        for record in recs:
            src.execute_command("SELECT", record.db)
            if src.dump(record.key) != payloads[record.db, record.key]:
                differ.append((record.type, record.encoding))
        assert set(differ) <= HASHTABLE, differ
        assert len(differ) < len(recs) // 10


@pytest.mark.parametrize("engine", ["redis-6.2", "redis-7.0", "valkey-8.1"])
def test_engine_refuses_a_newer_version_field(engine: str) -> None:
    """The version rule is the engine's: its own version loads, one above is refused."""
    if engine not in ENGINES:
        pytest.skip(f"{engine} not found")
    target = parse_target(engine)
    record = next(r for r in records(FIXTURES / "redis-6.2.rdb") if r.kind == "list")
    payload = payload_for(record, target)
    body = payload[:-FOOTER_SIZE] + (target.rdb_version + 1).to_bytes(2, "little")
    newer = body + crc64(body).to_bytes(8, "little")
    with EngineServer(ENGINES[engine]) as server:
        client = server.client()
        assert client.execute_command("RESTORE", b"ok", 0, payload) == b"OK"
        with pytest.raises(redis.ResponseError, match="version or checksum"):
            client.execute_command("RESTORE", b"newer", 0, newer)


def test_downgraded_payloads_match_a_converted_file(tmp_path: Path) -> None:
    """Redis 7.0 records re-encoded for Redis 6.2 (listpacks → ziplists, quicklist 2 → 1, stream v2 → v1)
    restore to the values a converted file loads."""
    if "redis-6.2" not in ENGINES:
        pytest.skip("redis-6.2 not found")
    target = parse_target("redis-6.2")
    path = FIXTURES / "redis-7.0.rdb"
    converted = tmp_path / "converted.rdb"
    convert(path, converted, target, allow_lossy=True)  # the fixture's functions are dropped
    recs = records(path)
    reencoded = {r.type for r in recs if split_payload(payload_for(r, target))[0] != r.type}
    assert reencoded >= {C.T_HASH_LISTPACK, C.T_ZSET_LISTPACK, C.T_LIST_QUICKLIST_2, C.T_STREAM_LISTPACKS_2}
    with EngineServer(ENGINES["redis-6.2"], rdb=converted) as loaded, EngineServer(ENGINES["redis-6.2"]) as empty:
        src, dst = loaded.client(), empty.client()
        for record in recs:
            dst.execute_command("SELECT", record.db)
            dst.execute_command("RESTORE", record.key, record.expire_ms or 0, payload_for(record, target),
                                *(["ABSTTL"] if record.expire_ms else []))
        for db in sorted({r.db for r in recs}):
            keys = [r.key for r in recs if r.db == db]
            assert digest_values(dst, db, keys) == digest_values(src, db, keys)
