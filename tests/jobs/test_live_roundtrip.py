"""The RDB engine proved against live engines.

For each engine here (Redis 6.2, Redis 7.0, Valkey 8.1, and any other found): the sample data set
(every type in every encoding, several databases, expiries, streams with groups, functions) is
written through commands and SAVEd by the engine itself. Then, always comparing with what an
engine holds:

* ``export`` equals what the engine returns for every key;
* ``digest`` equals the engine's ``DEBUG DIGEST``;
* a passthrough ``convert`` loads back with the same ``DEBUG DIGEST``;
* ``convert --target`` every other engine (older ones by re-encoding) loads there, every key reads back equal, and the
  digest there equals ``digest --engine`` of the converted file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from snaptool.engines.discovery import Engine, find_engines
from snaptool.engines.sample import json_text, keyspace_records, populate
from snaptool.engines.server import EngineServer
from snaptool.jobs.convert import convert
from snaptool.jobs.digest import digest_file
from snaptool.jobs.export import write_jsonl_record
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.targets import parse_target

ENGINES = {e.target_name: e for e in find_engines()}
SOURCES = sorted(ENGINES, key=lambda t: ENGINES[t].max_rdb_version)


@dataclass
class Snapshot:
    engine: Engine
    rdb: Path
    digest: str
    records: list[dict]
    functions: int


def _live_digest(server: EngineServer) -> str:
    c = server.client()
    try:
        return c.execute_command("DEBUG", "DIGEST").decode()
    finally:
        c.close()


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Snapshot]:
    """One SAVEd sample data set per engine, with what the engine itself reported."""
    out = {}
    for name in SOURCES:
        engine = ENGINES[name]
        with EngineServer(engine, config={"databases": "16"}) as server:
            populate(server.client, engine)
            rdb = tmp_path_factory.mktemp(name) / "dump.rdb"
            rdb.write_bytes(server.save().read_bytes())
            functions = 0
            if engine.supports_functions:
                functions = len(server.client().execute_command("FUNCTION", "LIST"))
            out[name] = Snapshot(engine, rdb, _live_digest(server), keyspace_records(server.client, engine),
                                 functions)
    return out


def _normalise(row: dict) -> dict:
    """Our export line in the shape ``keyspace_records`` reports (sets and hash pairs sorted)."""
    value = row["value"]
    if row["type"] == "set":
        value = sorted(value, key=json_text)
    elif row["type"] == "hash":
        value = sorted(([f, v] for f, v, *_ in value), key=json_text)
    elif row["type"] == "stream":
        value = {"entries": value["entries"], "last_id": value["last_id"],
                 "groups": sorted(g["name"] if isinstance(g["name"], str) else json_text(g["name"])
                                  for g in value["groups"])}
    return {**row, "value": value}


def _engine_view(records: list[dict]) -> dict:
    view = {}
    for row in records:
        value = row["value"]
        if row["type"] == "stream":
            value = {"entries": value["entries"], "last_id": value["last_id"],
                     "groups": sorted(g["name"] if isinstance(g["name"], str) else json_text(g["name"])
                                      for g in value["groups"])}
        view[(row["db"], json_text(row["key"]))] = {**row, "value": value}
    return view


def _exported(rdb: Path) -> dict:
    buf = io.StringIO()
    with RdbReader.open(rdb) as reader:
        for record in reader.records():
            write_jsonl_record(record, buf)
    rows = [_normalise(json.loads(line)) for line in buf.getvalue().splitlines()]
    return {(r["db"], json_text(r["key"])): r for r in rows}


def _assert_same_keys(got: dict, want: dict, *, ttl_tolerance_ms: int = 0) -> None:
    assert sorted(got) == sorted(want), "key sets differ"
    for k, row in want.items():
        mine = got[k]
        assert mine["type"] == row["type"], k
        assert mine["value"] == row["value"], k
        if row["expire_ms"] is None:
            assert mine["expire_ms"] is None, k
        else:
            assert abs(mine["expire_ms"] - row["expire_ms"]) <= ttl_tolerance_ms, k


def _tolerance(engine: Engine) -> int:
    return 0 if engine.supports_pexpiretime else 1000  # 6.2 reports PTTL, not absolute times


@pytest.mark.parametrize("source", SOURCES)
def test_export_equals_engine(snapshots: dict[str, Snapshot], source: str) -> None:
    snap = snapshots[source]
    assert len(snap.records) > 100
    _assert_same_keys(_exported(snap.rdb), _engine_view(snap.records), ttl_tolerance_ms=_tolerance(snap.engine))


@pytest.mark.parametrize("source", SOURCES)
def test_digest_equals_live_digest(snapshots: dict[str, Snapshot], source: str) -> None:
    snap = snapshots[source]
    assert digest_file(snap.rdb, parse_target(source)).digest == snap.digest
    assert digest_file(snap.rdb).digest == snap.digest  # default engine for the file's version


@pytest.mark.parametrize("source", SOURCES)
def test_passthrough_convert_loads_back_equal(snapshots: dict[str, Snapshot], source: str,
                                              tmp_path: Path) -> None:
    snap = snapshots[source]
    out = tmp_path / "same.rdb"
    report = convert(snap.rdb, out)
    assert report.reencoded == 0 and report.passthrough == report.keys == len(snap.records)
    with EngineServer(snap.engine, config={"databases": "16"}) as server:
        server.load(out)
        assert _live_digest(server) == snap.digest


PAIRS = [(s, t) for s in SOURCES for t in SOURCES if s != t]  # older targets re-encode, newer ones relabel


@pytest.mark.parametrize("source,target", PAIRS)
def test_convert_to_other_engine_loads_and_reads_back(snapshots: dict[str, Snapshot], source: str, target: str,
                                                      tmp_path: Path) -> None:
    snap = snapshots[source]
    engine = ENGINES[target]
    out = tmp_path / f"for-{target}.rdb"
    lossy = snap.functions and not engine.supports_functions
    report = convert(snap.rdb, out, parse_target(target), allow_lossy=bool(lossy))
    assert report.keys == len(snap.records)
    if lossy:
        assert report.dropped == {"functions": snap.functions}
    with EngineServer(engine, config={"databases": "16"}) as server:
        server.load(out)
        assert _live_digest(server) == digest_file(out, parse_target(target)).digest
        records = keyspace_records(server.client, engine)
        if engine.supports_functions and snap.functions:
            assert len(server.client().execute_command("FUNCTION", "LIST")) == snap.functions
    tolerance = max(_tolerance(engine), _tolerance(snap.engine))
    _assert_same_keys(_engine_view(records), _engine_view(snap.records), ttl_tolerance_ms=tolerance)


def test_lossy_conversion_is_refused_without_flag(snapshots: dict[str, Snapshot], tmp_path: Path) -> None:
    with_functions = [s for s in snapshots.values() if s.functions]
    if not with_functions or "redis-6.2" not in ENGINES:
        pytest.skip("needs an engine with functions and Redis 6.2")
    out = tmp_path / "old.rdb"
    from snaptool.errors import LossyConversionError
    with pytest.raises(LossyConversionError, match="functions"):
        convert(with_functions[0].rdb, out, parse_target("redis-6.2"))
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("fixture,policy,target", [
    ("redis-7.0-lfu", "allkeys-lfu", "redis-7.0"),
    ("redis-7.0-lfu", "allkeys-lfu", "redis-6.2"),
    ("redis-6.2-lru", "allkeys-lru", "redis-6.2"),
    ("redis-6.2-lru", "allkeys-lru", "valkey-8.1"),
])
def test_lru_and_lfu_hints_survive_convert(fixture: str, policy: str, target: str, tmp_path: Path) -> None:
    """IDLE and FREQ are carried through passthrough and re-encoding, and the engine applies them."""
    if target not in ENGINES:
        pytest.skip(f"{target} not found")
    src = Path(__file__).resolve().parents[2] / "fixtures" / f"{fixture}.rdb"
    out = tmp_path / "out.rdb"
    convert(src, out, parse_target(target), allow_lossy=True)
    with RdbReader.open(src) as reader:
        hints = {(r.db, r.key): (r.idle, r.freq) for r in reader.records()}
    assert any(i is not None or f is not None for i, f in hints.values())
    with EngineServer(ENGINES[target], config={"databases": "16", "maxmemory-policy": policy}) as server:
        server.load(out)
        checked = 0
        for (db, key), (idle, freq) in hints.items():
            c = server.client(db)
            if freq is not None:
                assert c.object("freq", key) == freq, key
                checked += 1
            elif idle is not None:
                assert abs(c.object("idletime", key) - idle) <= 2, key
                checked += 1
        assert checked == len(hints)
