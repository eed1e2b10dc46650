"""Split, reshard and merge, each result proven on live engines (a local cluster, or one node)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from snaptool.engines.discovery import find_engines
from snaptool.engines.sample import populate
from snaptool.engines.server import EngineServer
from snaptool.errors import SnaptoolError
from snaptool.jobs.dedupe import selected_records
from snaptool.jobs.merge import merge
from snaptool.jobs.split import split
from snaptool.jobs.validate import validate_cluster, validate_node
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.slots import SlotLayout
from snaptool.rdb.targets import parse_target

ENGINES = {e.target_name: e for e in find_engines() if e.target_name in ("redis-6.2", "redis-7.0", "valkey-8.1")}
DB_MAP = {1: 0, 5: 0}  # the sample data holds `string:short` in db 0 and db 1: mapping makes it meet itself


def kept(*paths) -> object:
    """The source records a split with DB_MAP and on_duplicate="first" keeps."""
    return selected_records([str(p) for p in paths], "first", map_db=lambda db, path: DB_MAP.get(db, db))


def records(*paths):
    for path in paths:
        with RdbReader.open(path) as reader:
            yield from reader.records()


def keys_of(path) -> list[tuple[int, bytes]]:
    return [(r.db, r.key) for r in records(path)]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, Path]:
    """The sample data set SAVEd by each engine, plus hash-tagged keys that must stay together."""
    out = {}
    for name, engine in ENGINES.items():
        with EngineServer(engine, config={"databases": "16"}) as server:
            populate(server.client, engine)
            c = server.client()
            for i in range(50):
                c.set(f"{{user{i % 5}}}:field{i}", i)
            path = tmp_path_factory.mktemp(name) / "dump.rdb"
            path.write_bytes(server.save().read_bytes())
            out[name] = path
    return out


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
@pytest.mark.parametrize("shards", [1, 3, 7])
def test_split_validates_on_a_live_cluster(snapshots, engine_name: str, shards: int, tmp_path: Path) -> None:
    source = snapshots[engine_name]
    layout = SlotLayout.even(shards)
    report = split([source], tmp_path, layout, db_map=DB_MAP, on_duplicate="first")
    assert report.keys_in == len(keys_of(source)) == report.keys_out + 1
    assert report.duplicates == report.duplicates_dropped == 1
    manifest = json.loads((tmp_path / "layout.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == [s.name for s in layout.shards]
    for index, shard in enumerate(manifest["shards"]):
        held = keys_of(tmp_path / shard["file"])
        assert sum(shard["keys"].values()) == len(held)
        assert all(db == 0 and layout.shard_of(key_slot(key)) == index for db, key in held)
    tagged = {layout.shard_of(key_slot(f"{{user{i}}}:x".encode())) for i in range(5)}
    assert tagged  # hash tags: every {userN} key sits in the shard of its tag
    for i in range(5):
        owner = layout.shard_of(key_slot(f"{{user{i}}}".encode()))
        held = {key for _, key in keys_of(tmp_path / manifest["shards"][owner]["file"])}
        assert {f"{{user{i}}}:field{j}".encode() for j in range(i, 50, 5)} <= held
    files = [str(tmp_path / s["file"]) for s in manifest["shards"]]
    validation = validate_cluster(ENGINES[engine_name], layout, files, kept(source))
    assert validation.ok, validation.table()
    assert validation.checked == validation.equal == validation.live_keys > 200


def test_reshard_3_to_5_to_2(snapshots, tmp_path: Path) -> None:
    name = "redis-7.0" if "redis-7.0" in ENGINES else sorted(ENGINES)[0]
    source = snapshots[name]
    first = split([source], tmp_path / "three", SlotLayout.even(3), db_map=DB_MAP, on_duplicate="first")
    three = [str(tmp_path / "three" / s.file) for s in first.shards]
    five = split(three, tmp_path / "five", SlotLayout.even(5))
    five_files = [str(tmp_path / "five" / s.file) for s in five.shards]
    two = split(five_files, tmp_path / "two", SlotLayout.even(2))
    assert first.keys_out == five.keys_out == two.keys_out
    two_files = [str(tmp_path / "two" / s.file) for s in two.shards]
    report = validate_cluster(ENGINES[name], SlotLayout.even(2), two_files, kept(source))
    assert report.ok, report.table()


def test_other_databases_need_a_map_and_collisions_are_refused(snapshots, tmp_path: Path) -> None:
    source = next(iter(snapshots.values()))
    with pytest.raises(SnaptoolError, match="--db-map 1:0"):
        split([source], tmp_path / "out", SlotLayout.even(3))
    with pytest.raises(SnaptoolError, match=r"1 keys appear in more than one place.*string:short"):
        split([source], tmp_path / "out", SlotLayout.even(3), db_map=DB_MAP)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _file(path: Path, target: str, values: dict[bytes, bytes]) -> Path:
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target(target))
        for key, value in values.items():
            builder.add(key, "string", value)
        builder.finish()
    return path


def test_merge_duplicate_policies(tmp_path: Path) -> None:
    a = _file(tmp_path / "a.rdb", "redis-7.0", {b"k1": b"a1", b"dup": b"from-a", b"k2": b"a2"})
    b = _file(tmp_path / "b.rdb", "redis-7.0", {b"k3": b"b3", b"dup": b"from-b"})
    out = tmp_path / "m.rdb"
    with pytest.raises(SnaptoolError, match=r"1 keys appear in more than one place.*dup"):
        merge([a, b], out)
    assert not out.exists()
    for policy, kept in (("first", b"from-a"), ("last", b"from-b")):
        report = merge([a, b], out, on_duplicate=policy)
        values = {r.key: r.value() for r in records(out)}
        assert values == {b"k1": b"a1", b"k2": b"a2", b"k3": b"b3", b"dup": kept}
        assert report.duplicates == 1 and report.duplicates_dropped == 1 and report.keys_out == 4
        engine = ENGINES.get("redis-7.0") or next(iter(ENGINES.values()))
        validation = validate_node(engine, str(out), selected_records([str(a), str(b)], policy))
        assert validation.ok and validation.digest_live == validation.digest_expected, validation.table()


def test_merge_of_split_shards_equals_the_shards(snapshots, tmp_path: Path) -> None:
    """Split proves shards = source on a cluster; this proves merge(shards) = shards on one node."""
    name = sorted(snapshots)[0]
    report = split([snapshots[name]], tmp_path / "shards", SlotLayout.even(3), db_map=DB_MAP, on_duplicate="first")
    shards = [str(tmp_path / "shards" / s.file) for s in report.shards]
    merged = tmp_path / "merged.rdb"
    result = merge(shards, merged)
    assert result.duplicates == 0 and result.keys_out == report.keys_out
    validation = validate_node(ENGINES[name], str(merged), records(*shards))
    assert validation.ok and validation.checked == report.keys_out, validation.table()


def test_mixed_redis_74_and_valkey_9_inputs_need_a_target(tmp_path: Path) -> None:
    redis74 = _file(tmp_path / "r.rdb", "redis-7.4", {b"a": b"1"})
    valkey9 = _file(tmp_path / "v.rdb", "valkey-9.0", {b"b": b"2"})
    with pytest.raises(SnaptoolError, match="--target"):
        merge([redis74, valkey9], tmp_path / "m.rdb")
    with pytest.raises(SnaptoolError, match="--target"):
        split([redis74, valkey9], tmp_path / "s", SlotLayout.even(2))
    report = merge([redis74, valkey9], tmp_path / "m.rdb", target=parse_target("valkey-9.0"))
    assert report.keys_out == 2


def test_unreadable_input_writes_nothing(tmp_path: Path) -> None:
    good = _file(tmp_path / "g.rdb", "redis-7.0", {b"a": b"1"})
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(SnaptoolError):
        split([good, bad], tmp_path / "out", SlotLayout.even(2))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    with pytest.raises(SnaptoolError):
        merge([good, bad], tmp_path / "m.rdb")
    assert not (tmp_path / "m.rdb").exists()


def test_validation_catches_what_differs(snapshots, tmp_path: Path) -> None:
    """Checked against another snapshot's records, the same cluster must fail, naming keys."""
    name = sorted(snapshots)[0]
    report = split([snapshots[name]], tmp_path, SlotLayout.even(2), db_map=DB_MAP, on_duplicate="first")
    files = [str(tmp_path / s.file) for s in report.shards]
    other = _file(tmp_path / "other.rdb", "redis-6.2", {b"string:short": b"not the same", b"absent": b"x"})
    validation = validate_cluster(ENGINES[name], SlotLayout.even(2), files, records(other))
    assert not validation.ok
    assert validation.different == 1 and validation.missing == 1 and validation.extra == report.keys_out - 1
    assert any("absent" in p for p in validation.problems)


def test_cli_split_and_merge(snapshots, tmp_path: Path) -> None:
    import subprocess
    import sys
    name = sorted(snapshots)[0]
    run = lambda *args: subprocess.run([sys.executable, "-m", "snaptool", *args], capture_output=True, timeout=300)
    result = run("split", str(snapshots[name]), "-o", str(tmp_path / "s"), "--shards", "3", "--db-map", "1:0,5:0",
                 "--on-duplicate", "first", "--engine", name, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["validation"]["ok"] and len(summary["shards"]) == 3
    files = sorted(str(p) for p in (tmp_path / "s").glob("*.rdb"))
    result = run("merge", *files, "-o", str(tmp_path / "m.rdb"), "--engine", name)
    assert result.returncode == 0 and b"validated" in result.stderr, result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "a", "slots": [[0, 9000]]}, {"name": "b", "slots": [[8000, 16000]]}]))
    result = run("split", str(snapshots[name]), "-o", str(tmp_path / "x"), "--slots", str(bad))
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_a_disk_that_fills_at_layout_json_is_one_error_and_leaves_no_temporary_file(
        snapshots, full_disk: Path, tmp_path: Path) -> None:
    """The shard files fit on the disk (a tmpfs filled to leave exactly their pages) and
    layout.json does not: the error says so, the shard files stay whole, no temporary file."""
    name = sorted(snapshots)[0]
    probe = split([snapshots[name]], tmp_path / "probe", SlotLayout.even(2), db_map=DB_MAP, on_duplicate="first")
    page = os.statvfs(full_disk).f_frsize
    needed = sum(-(-s.bytes // page) for s in probe.shards)
    free = os.statvfs(full_disk).f_bavail
    assert free > needed
    (full_disk / "filler").write_bytes(b"\0" * ((free - needed) * page))
    out = full_disk / "out"
    with pytest.raises(SnaptoolError, match=r"writing .*layout\.json: No space left on device \(the shard files are "
                                            r"written; without layout\.json the set reads as incomplete\)"):
        split([snapshots[name]], out, SlotLayout.even(2), db_map=DB_MAP, on_duplicate="first")
    assert sorted(p.name for p in out.iterdir()) == ["shard-0001.rdb", "shard-0002.rdb"]
    for shard in probe.shards:
        assert (out / shard.file).read_bytes() == (tmp_path / "probe" / shard.file).read_bytes()


def test_parallel_and_sequential_reads_write_the_same_files(snapshots, tmp_path: Path) -> None:
    """Twelve inputs on fewer cores: workers queue up, and the outputs must still be byte-identical."""
    name = sorted(snapshots)[0]
    five = split([snapshots[name]], tmp_path / "five", SlotLayout.even(12), db_map=DB_MAP, on_duplicate="first")
    inputs = [str(tmp_path / "five" / s.file) for s in five.shards]
    parallel = split(inputs, tmp_path / "par", SlotLayout.even(3), parallel=True)
    sequential = split(inputs, tmp_path / "seq", SlotLayout.even(3), parallel=False)
    assert parallel.keys_in == sequential.keys_in == parallel.keys_out == five.keys_out
    for shard in parallel.shards:
        assert (tmp_path / "par" / shard.file).read_bytes() == (tmp_path / "seq" / shard.file).read_bytes()


def test_parallel_split_leaves_no_temporary_files(snapshots, tmp_path: Path, monkeypatch) -> None:
    """The workers' bodies and the partial outputs are gone afterwards, also when an input fails."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    name = sorted(snapshots)[0]
    four = split([snapshots[name]], tmp_path / "four", SlotLayout.even(4), db_map=DB_MAP, on_duplicate="first")
    inputs = [tmp_path / "four" / s.file for s in four.shards]
    report = split(inputs, tmp_path / "out", SlotLayout.even(3))
    held = [len(keys_of(tmp_path / "out" / s.file)) for s in report.shards]
    assert held == [sum(s.keys.values()) for s in report.shards]
    assert sum(held) == report.keys_out == four.keys_out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["layout.json", *(s.file for s in report.shards)]
    assert not list(spool.iterdir())
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(inputs[2].read_bytes()[:-5])
    with pytest.raises(SnaptoolError, match="bad.rdb"):
        split([inputs[0], inputs[1], bad, inputs[3]], tmp_path / "failed", SlotLayout.even(3))
    assert not (tmp_path / "failed").exists() or not list((tmp_path / "failed").iterdir())
    assert not list(spool.iterdir())


def test_split_of_inputs_sharing_keys_keeps_one_copy(tmp_path: Path) -> None:
    """Duplicates send the inputs through a second pass in this process; the outputs are then
    written here, not by the workers, and still hold every key once."""
    a = _file(tmp_path / "a.rdb", "redis-7.0", {b"k%d" % i: b"a" for i in range(60)})
    b = _file(tmp_path / "b.rdb", "redis-7.0", {b"k%d" % i: b"b" for i in range(30, 90)})
    report = split([a, b], tmp_path / "out", SlotLayout.even(2), on_duplicate="last")
    assert report.duplicates == report.duplicates_dropped == 30 and report.keys_out == 90
    values = {r.key: r.value() for s in report.shards for r in records(tmp_path / "out" / s.file)}
    assert values == {b"k%d" % i: b"a" if i < 30 else b"b" for i in range(90)}


def _expiring(path: Path, expire_ms: int) -> Path:
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-7.0"))
        for i in range(10):
            builder.add(b"k%d" % i, "string", b"v", expire_ms=expire_ms)
        builder.finish()
    return path


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
def test_validation_compares_expiry_times(engine_name: str, tmp_path: Path) -> None:
    """DIGEST-VALUE only says whether a key expires; validation also compares when."""
    soon = _expiring(tmp_path / "soon.rdb", 2051222400000)
    later = _expiring(tmp_path / "later.rdb", 2051222400000 + 86_400_000)
    engine = ENGINES[engine_name]
    target = "redis-6.2" if engine_name == "redis-6.2" else "redis-7.0"
    if engine_name == "redis-6.2":  # RDB 10 does not load on 6.2: write both for RDB 9
        from snaptool.jobs.convert import convert
        for path in (soon, later):
            convert(path, path.with_suffix(".v9"), parse_target(target))
            path.with_suffix(".v9").replace(path)
    assert validate_node(engine, str(soon), records(soon)).ok
    failed = validate_node(engine, str(later), records(soon))
    assert not failed.ok and failed.different == 10 and "expiry" in failed.problems[0]


def test_outputs_never_replace_inputs_and_old_shards_go(snapshots, tmp_path: Path) -> None:
    source = _file(tmp_path / "a.rdb", "redis-7.0", {b"k%d" % i: b"v" for i in range(50)})
    split([source], tmp_path / "d", SlotLayout.even(3))
    inputs = sorted(str(p) for p in (tmp_path / "d").glob("*.rdb"))
    with pytest.raises(SnaptoolError, match="is also an input"):
        split(inputs, tmp_path / "d", SlotLayout.even(2))
    with pytest.raises(SnaptoolError, match="is also an input"):
        merge([source], source)
    split([source], tmp_path / "d", SlotLayout.even(2))
    assert sorted(p.name for p in (tmp_path / "d").glob("*.rdb")) == ["shard-0001.rdb", "shard-0002.rdb"]
    # an input of the earlier layout's, split again into that directory, is never removed as stale
    split([source], tmp_path / "d", SlotLayout.even(3))
    third = tmp_path / "d" / "shard-0003.rdb"
    kept = third.read_bytes()
    split([third], tmp_path / "d", SlotLayout.even(2))
    assert third.read_bytes() == kept
    assert not (tmp_path / "e").exists()
    with pytest.raises(SnaptoolError):
        split([source, str(tmp_path / "missing.rdb")], tmp_path / "e", SlotLayout.even(2))
    assert not (tmp_path / "e").exists()  # a failed split leaves no directory it made


@pytest.mark.parametrize("policy,kept", [("first", b"a"), ("last", b"b")])
def test_many_duplicates_spill_to_disk(policy: str, kept: bytes, tmp_path: Path, monkeypatch) -> None:
    """Past the in-memory limit, duplicate counts live in SQLite on disk; the policy still holds."""
    from snaptool.jobs import dedupe
    monkeypatch.setattr(dedupe, "_IN_MEMORY", 5)
    a = _file(tmp_path / "a.rdb", "redis-7.0", {b"k%d" % i: b"a" for i in range(60)})
    b = _file(tmp_path / "b.rdb", "redis-7.0", {b"k%d" % i: b"b" for i in range(30, 90)})
    report = merge([a, b], tmp_path / "m.rdb", on_duplicate=policy)
    assert report.duplicates == 30 and report.duplicates_dropped == 30 and report.keys_out == 90
    values = {r.key: r.value() for r in records(tmp_path / "m.rdb")}
    assert all(values[b"k%d" % i] == kept for i in range(30, 60))
    assert values[b"k0"] == b"a" and values[b"k89"] == b"b"
    with pytest.raises(SnaptoolError, match="30 keys appear in more than one place"):
        merge([a, b], tmp_path / "e.rdb")


def _items(path, kind) -> list:
    with RdbReader.open(str(path)) as reader:
        return [item for item in reader.items() if isinstance(item, kind)]


def test_merge_keeps_databases_apart_and_functions_once(snapshots, tmp_path: Path) -> None:
    """Identical function libraries appear once, conflicting ones are refused; every database of
    every input keeps its keys, proven on one live node (per key and DEBUG DIGEST)."""
    from snaptool.rdb.items import Function

    name = "redis-7.0" if "redis-7.0" in snapshots else sorted(snapshots)[0]
    source = snapshots[name]
    libraries = _items(source, Function)
    assert len(libraries) == 2  # the sample data's two Lua libraries
    other = tmp_path / "other.rdb"
    with open(other, "wb") as f:
        builder = RdbBuilder(f, parse_target(name), functions=[lib.code for lib in libraries])
        builder.add(b"other:0", "string", b"zero", db=0)
        builder.add(b"other:3", "hash", [(b"f", b"v", None)], db=3)
        builder.finish()
    merged = tmp_path / "merged.rdb"
    report = merge([source, other], merged)
    assert report.duplicates == 0
    assert sorted(lib.code for lib in _items(merged, Function)) == sorted(lib.code for lib in libraries)
    by_db: dict[int, set[bytes]] = {}
    for db, key in keys_of(source) + keys_of(other):
        by_db.setdefault(db, set()).add(key)
    assert {db: {k for d, k in keys_of(merged) if d == db} for db in by_db} == by_db
    assert len(by_db) >= 3  # several databases, kept apart
    validation = validate_node(ENGINES[name], str(merged), records(source, other), databases=max(by_db) + 1)
    assert validation.ok, validation.table()

    conflicting = tmp_path / "conflicting.rdb"
    changed = libraries[0].code.replace(b"return", b"return 1 and", 1)
    assert changed != libraries[0].code
    with open(conflicting, "wb") as f:
        builder = RdbBuilder(f, parse_target(name), functions=[changed])
        builder.add(b"third", "string", b"x")
        builder.finish()
    with pytest.raises(SnaptoolError, match=f"function library '{libraries[0].name.decode()}' differs"):
        merge([source, conflicting], tmp_path / "refused.rdb")
    assert not (tmp_path / "refused.rdb").exists()


def test_idle_and_freq_hints_survive_the_split(tmp_path: Path) -> None:
    """LFU counters (and LRU idle times) are part of each record's bytes: routed as they are."""
    engine = ENGINES.get("redis-7.0") or next(iter(ENGINES.values()))
    outputs = {}
    for policy in ("allkeys-lfu", "allkeys-lru"):
        with EngineServer(engine, config={"maxmemory-policy": policy}) as server:
            c = server.client()
            for i in range(200):
                c.set(f"k{i}", i)
                for _ in range(i % 7):
                    c.get(f"k{i}")
            path = tmp_path / f"{policy}.rdb"
            path.write_bytes(server.save().read_bytes())
        want = {r.key: (r.freq, r.idle) for r in records(path)}
        assert any(f for f, _ in want.values()) or any(i is not None for _, i in want.values())
        report = split([path], tmp_path / policy, SlotLayout.even(3))
        got = {r.key: (r.freq, r.idle) for s in report.shards for r in records(tmp_path / policy / s.file)}
        assert got == want
        outputs[policy] = want
    assert any(f for f, _ in outputs["allkeys-lfu"].values())  # LFU counters were there to keep


@pytest.mark.skipif(not (Path(__file__).resolve().parents[3] / "shared" / "corpora" / "redis__librdb").is_dir(),
                    reason="the shared RDB corpora are not beside the project")
def test_slot_info_is_never_copied_stale(tmp_path: Path) -> None:
    """An RDB 12 file with SLOT_INFO (librdb's cluster fixture): each output says nothing stale."""
    from snaptool.rdb.items import SlotInfo

    source = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "redis__librdb" / "test" / "dumps" \
        / "cluster_slot_info.rdb"
    assert _items(source, SlotInfo)
    report = split([source], tmp_path, SlotLayout.even(2))  # RDB 12 in, RDB 12 out
    for shard in report.shards:
        assert _items(tmp_path / shard.file, SlotInfo) == []
    assert report.keys_out == len(keys_of(source))
