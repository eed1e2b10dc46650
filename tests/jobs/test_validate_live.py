"""validate_live against real engines: a node loaded from each fixture, a 3-shard cluster built from
split files, nodes that refuse DEBUG or need a password; every difference planted must be found
and counted where it belongs."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from snaptool.engines.address import NodeAddress
from snaptool.engines.cluster import LocalCluster
from snaptool.engines.discovery import Engine
from snaptool.engines.reads import ServerTraits, compare_value, raw_client, run_pipelined
from snaptool.engines.resp import RespConnection, bulk, encode, encode_all
from snaptool.errors import EngineError, SnaptoolError
from snaptool.jobs.dedupe import selected_records
from snaptool.jobs.digest import digest_value_input
from snaptool.jobs.split import split
from snaptool.jobs.validate_live import validate_live
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.digest import DatasetDigest
from snaptool.rdb.items import Record
from snaptool.rdb.model import StreamEntry, StreamValue
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.slots import SlotLayout
from snaptool.rdb.targets import parse_target

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
TARGETS = ("redis-6.2", "redis-7.0", "valkey-8.1")
HOUR_MS = 3_600_000


def records(*paths: Path | str) -> Iterator[Record]:
    for path in paths:
        with RdbReader.open(path) as reader:
            yield from reader.records()


def fixture(target: str) -> Path:
    return FIXTURES / f"{target}.rdb"


def fixture_counts(target: str) -> dict[int, int]:
    """Keys per database, from the fixture's export (what the engine held when it saved)."""
    lines = (FIXTURES / f"{target}.jsonl").read_text().splitlines()
    return dict(Counter(json.loads(line)["db"] for line in lines))


def expired_file(path: Path, target: str) -> Path:
    """Two keys whose expiry is long past: a loading engine drops them, validation must skip them."""
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target(target))
        builder.add(b"gone:string", "string", b"x", expire_ms=1_000_000)
        builder.add(b"gone:list", "list", [b"a", b"b"], db=1, expire_ms=2_000_000)
        builder.finish()
    return path


def start_fixture(engine_server: Callable, target: str, **config: str):
    return engine_server(target, rdb=fixture(target), config={"databases": "16", **config})


# ------------------------------------------------------------------ one node per fixture

def _plant_differences(c: Callable[[int], redis.Redis]) -> dict[str, set[bytes]]:
    """Change the loaded fixture in every way validation must notice; returns the keys per verdict."""
    db0 = c(0)
    first_pending = db0.xpending_range("stream:main", "g1", min="-", max="+", count=1)[0]["message_id"]
    db0.set("string:short", "changed")
    db0.delete("list:small")
    db0.set("extra:key", "not in the snapshot")
    db0.pexpire("ttl:string", db0.pttl("ttl:string") + HOUR_MS)
    db0.persist("ttl:list")  # a TTL in the snapshot, none live
    db0.pexpire("string:utf8", 10 * HOUR_MS)  # none in the snapshot, a TTL live
    db0.zadd("zset:small", {"c": 2.5 + 1e-9})
    db0.xadd("stream:trimmed", {"n": "new"})
    db0.xack("stream:main", "g1", first_pending)  # only the group's pending list changes
    db0.lset("list:large", 900, "changed")  # on the second page
    db0.hset("hash:large", "field-0590", "changed")
    db0.srem("set:large:strings", db0.srandmember("set:large:strings"))
    db0.sadd("set:large:strings", "a member of the same set size")
    db0.rpush("list:binary", "one more")  # every expected element still there: only sizes tell
    db0.sadd("set:binary", "one more")
    db0.hset("hash:binary", "one more", "x")
    db0.delete("hash:small")
    db0.set("hash:small", "now a string")
    c(1).set("db1:string", "changed in db 1")
    c(5).delete("db5:set")
    return {
        "different": {b"string:short", b"ttl:string", b"ttl:list", b"string:utf8", b"zset:small",
                      b"stream:trimmed", b"stream:main", b"list:large", b"hash:large", b"set:large:strings",
                      b"hash:small", b"db1:string", b"list:binary", b"set:binary", b"hash:binary"},
        "missing": {b"list:small", b"db5:set"},
    }


def _named(problems: list[str], verdict: str, keys: set[bytes]) -> bool:
    """Whether every one of ``keys`` is listed with ``verdict``."""
    return all(any(p.startswith(f"{verdict}: {key!r}") for p in problems) for key in keys)


def without_dump(server) -> NodeAddress:
    """A user of ``server`` who may not DUMP: every key is then compared the mode's own way."""
    server.client().acl_setuser("nodump", enabled=True, passwords=["+nodump pass"], keys=["*"],
                                commands=["+@all", "-dump"])
    return NodeAddress(server.host, server.port, username="nodump", password="nodump pass")


@pytest.mark.parametrize("dump", [True, False], ids=["dump", "no-dump"])
@pytest.mark.parametrize("mode", ["digest", "reads"])
@pytest.mark.parametrize("target", TARGETS)
def test_fixture_node_validates_and_every_difference_is_found(engine_server, target: str, mode: str, dump: bool,
                                                              tmp_path: Path) -> None:
    server = start_fixture(engine_server, target)
    address = server.address if dump else without_dump(server)
    expired = expired_file(tmp_path / "expired.rdb", target)
    counts = fixture_counts(target)
    report = validate_live(address, itertools.chain(records(fixture(target)), records(expired)), mode=mode)
    assert report.ok, report.table()
    assert report.mode == mode and report.sample is None
    assert report.checked == report.equal == sum(counts.values()) == report.live_keys
    assert report.expected_per_db == report.live_per_db == counts
    assert report.expired_skipped == 2 and report.missing == report.different == report.extra == 0

    planted = _plant_differences(server.client)
    report = validate_live(address, records(fixture(target)), mode=mode)
    assert not report.ok
    assert report.different == len(planted["different"]), report.table()
    assert report.missing == len(planted["missing"]) and report.extra == 1, report.table()
    assert _named(report.problems, "different", planted["different"])
    assert _named(report.problems, "missing", planted["missing"])
    assert report.live_per_db[5] == counts[5] - 1 and not report.counts_match
    assert "group b'g1'" in next(p for p in report.problems if "stream:main" in p)
    for key in ("ttl:string", "ttl:list", "string:utf8"):
        assert "expiry" in next(p for p in report.problems if f"'{key}'" in p)
    assert json.loads(json.dumps(report.to_json()))["ok"] is False
    assert "db5" in report.table() and "VALIDATION FAILED" in report.summary()


def test_reads_mode_names_what_differs(engine_server) -> None:
    server = start_fixture(engine_server, "valkey-8.1")
    c = server.client()
    c.zadd("zset:special", {"tenth": 0.1 + 1e-9})
    c.xack("stream:main", "g1", c.xpending_range("stream:main", "g1", min="-", max="+", count=1)[0]["message_id"])
    c.delete("set:small:strings")
    c.zadd("set:small:strings", {"apple": 1})
    report = validate_live(server.address, records(fixture("valkey-8.1")), mode="reads")
    problems = {p.split(": ")[1]: p for p in report.problems}
    assert "member b'tenth' has score 0.100000001" in problems["b'zset:special'"]
    assert "group b'g1'" in problems["b'stream:main'"]
    assert "is a zset, in the snapshot a set" in problems["b'set:small:strings'"]


def test_large_keys_are_read_in_pages(engine_server, tmp_path: Path) -> None:
    """Keys many pages long validate, and a difference on a late page is still found."""
    path = tmp_path / "big.rdb"
    n = 3000
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-7.0"))
        builder.add(b"big:list", "list", [b"e%d" % i for i in range(n)])
        builder.add(b"big:set", "set", [b"m%d" % i for i in range(n)])
        builder.add(b"big:zset", "zset", [(b"m%d" % i, i / 7) for i in range(n)])
        builder.add(b"big:hash", "hash", [(b"f%d" % i, b"v%d" % i, None) for i in range(n)])
        entries = [StreamEntry((1_700_000_000_000 + i, 0), [(b"n", b"%d" % i)]) for i in range(1500)]
        builder.add(b"big:stream", "stream", StreamValue(entries, len(entries), entries[-1].id))
        builder.finish()
    server = engine_server("redis-7.0", rdb=path)
    for mode in ("digest", "reads"):
        report = validate_live(server.address, records(path), mode=mode)
        assert report.ok and report.checked == 5, report.table()
    c = server.client()
    c.lset("big:list", 2900, "changed")
    c.srem("big:set", "m2999")
    c.sadd("big:set", "other")
    c.zadd("big:zset", {"m2999": 2999 / 7 + 1e-9})
    c.hset("big:hash", "f2999", "changed")
    c.xdel("big:stream", "1700000001300-0")
    c.xadd("big:stream", {"n": "new"})  # the same length again
    report = validate_live(server.address, records(path), mode="reads")
    assert report.different == 5 and report.equal == 0, report.table()


def test_reads_fall_back_on_engines_without_newer_commands(engine_server, get_engine) -> None:
    """Before 6.2 there is no SMISMEMBER / ZMSCORE, before 6.0 no XINFO STREAM FULL, before 7.0 no
    PEXPIRETIME: the fallbacks must compare just as strictly."""
    server = start_fixture(engine_server, "redis-7.0")
    client = raw_client(server.address)
    engine = get_engine("redis-7.0")
    assert ServerTraits.read(client) == ServerTraits("redis", engine.version)
    old = ServerTraits("redis", (5, 0, 14))
    assert not (old.multi_lookup or old.stream_full or old.pexpiretime or old.field_ttl)
    db0 = [r for r in records(fixture("redis-7.0")) if r.db == 0]

    def compare() -> dict[bytes, str | None]:
        readers = [compare_value(old, r.key, r.kind, digest_value_input(r)) for r in db0]
        return dict(zip((r.key for r in db0), run_pipelined(client, readers)))

    assert set(compare().values()) == {None}
    c = server.client()
    c.zadd("zset:small", {"c": 2.5 + 1e-9})
    c.srem("set:small:strings", "apple")
    c.sadd("set:small:strings", "apples")
    c.xadd("stream:all-deleted", {"a": "new"})
    c.xdel("stream:all-deleted", c.xrevrange("stream:all-deleted", count=1)[0][0])  # only the last id moved
    problems = {key: problem for key, problem in compare().items() if problem}
    assert problems.keys() == {b"zset:small", b"set:small:strings", b"stream:all-deleted"}, problems
    assert problems[b"zset:small"].startswith("member b'c' has score 2.500000001")
    assert problems[b"set:small:strings"] == "member b'apple' is missing"
    assert problems[b"stream:all-deleted"].startswith("last id is ")
    client.close()


def test_bad_arguments_are_refused_before_connecting() -> None:
    nowhere = NodeAddress("127.0.0.1", 1)
    with pytest.raises(SnaptoolError, match="unknown validation mode"):
        validate_live(nowhere, [], mode="fast")
    with pytest.raises(SnaptoolError, match="at least one key"):
        validate_live(nowhere, [], sample=0)
    with pytest.raises(EngineError, match="127.0.0.1:1"):
        validate_live(nowhere, [])


def test_debug_refused_picks_reads(engine_server, get_engine: Callable[[str], Engine]) -> None:
    engine = get_engine("redis-7.0")
    assert engine.supports_enable_debug_command
    server = start_fixture(engine_server, "redis-7.0", **{"enable-debug-command": "no"})
    with pytest.raises(redis.ResponseError, match="DEBUG command not allowed"):
        server.client().execute_command("DEBUG", "DIGEST-VALUE", "x")
    report = validate_live(server.address, records(fixture("redis-7.0")))
    assert report.ok and report.mode == "reads" and report.checked == sum(fixture_counts("redis-7.0").values())
    with pytest.raises(EngineError, match="refuses DEBUG DIGEST-VALUE"):
        validate_live(server.address, records(fixture("redis-7.0")), mode="digest")
    auto = validate_live(start_fixture(engine_server, "redis-7.0").address, records(fixture("redis-7.0")))
    assert auto.ok and auto.mode == "digest"


def test_a_sample_compares_that_many_keys_and_still_counts_all(engine_server) -> None:
    server = start_fixture(engine_server, "redis-7.0")
    total = sum(fixture_counts("redis-7.0").values())
    first = validate_live(server.address, records(fixture("redis-7.0")), sample=50)
    assert first.ok and first.checked == first.equal == 50 and first.sample == 50, first.table()
    assert sum(first.expected_per_db.values()) == total == first.live_keys
    assert "a sample of 50" in first.summary()
    everything = validate_live(server.address, records(fixture("redis-7.0")), sample=10_000, mode="reads")
    assert everything.ok and everything.checked == total
    server.client(1).delete("db1:hash")  # most likely not sampled: the counts still see it
    report = validate_live(server.address, records(fixture("redis-7.0")), sample=50)
    assert report.checked == 50 and not report.ok and not report.counts_match
    assert report.live_per_db[1] == report.expected_per_db[1] - 1


def test_password_protected_node(engine_server) -> None:
    server = start_fixture(engine_server, "valkey-8.1", requirepass="s3cret pass")
    assert server.address.password == "s3cret pass"
    report = validate_live(server.address, records(fixture("valkey-8.1")), mode="reads")
    assert report.ok and report.checked > 200, report.table()
    assert "s3cret" not in json.dumps(report.to_json()) + report.table() + report.summary()
    with pytest.raises(EngineError, match="authentication|NOAUTH"):
        validate_live(NodeAddress(server.host, server.port), records(fixture("valkey-8.1")))
    admin = server.client()
    admin.acl_setuser("reader", enabled=True, passwords=["+reader pass"], keys=["*"], commands=["+@all", "-debug"])
    reader = NodeAddress(server.host, server.port, username="reader", password="reader pass")
    report = validate_live(reader, records(fixture("valkey-8.1")))  # DEBUG denied by ACL: reads
    assert report.ok and report.mode == "reads", report.table()
    admin.acl_setuser("reader", enabled=True, commands=["-hmget"])  # added to what it had
    with pytest.raises(EngineError, match=r"^redis://reader@127\.0\.0\.1:\d+ refused HMGET: .*permission"):
        validate_live(reader, records(fixture("valkey-8.1")))


def test_values_written_differently_by_the_node_still_validate(engine_server, tmp_path: Path) -> None:
    """An RDB 9 file (ziplists) in a Redis 7.0 node (listpacks): the node's DUMP payloads differ
    from the file's records, so those keys are compared by digest or reads instead."""
    path = tmp_path / "old.rdb"
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-6.2"))
        for i in range(300):
            builder.add(b"list:%d" % i, "list", [b"a", b"%d" % i])
            builder.add(b"hash:%d" % i, "hash", [(b"f", b"%d" % i, None)])
            builder.add(b"string:%d" % i, "string", b"v%d" % i, expire_ms=4_000_000_000_000 + i)
        builder.finish()
    server = engine_server("redis-7.0", rdb=path)
    for mode in ("digest", "reads"):
        report = validate_live(server.address, records(path), mode=mode)
        assert report.ok and report.equal == 900, report.table()
    c = server.client()
    c.rpush("list:299", "x")
    c.hset("hash:0", "f", "changed")
    c.pexpireat("string:5", 4_000_000_000_001)
    for mode in ("digest", "reads"):
        report = validate_live(server.address, records(path), mode=mode)
        assert report.different == 3 and report.equal == 897, report.table()
        assert "expiry" in next(p for p in report.problems if "'string:5'" in p)


def test_long_values_span_many_reads(engine_server, tmp_path: Path) -> None:
    """Replies longer than one read of the socket, below and above the size compared by DUMP; a
    difference in a value's last byte is found."""
    rng = random.Random(7)
    values = {b"long:%d" % size: rng.randbytes(size) for size in (70_000, 300_000, 900_000)}
    path = tmp_path / "long.rdb"
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("valkey-8.1"))
        for key, value in values.items():
            builder.add(key, "string", value)
        builder.add(b"list:long", "list", list(values.values()))
        builder.finish()
    server = engine_server("valkey-8.1", rdb=path)
    for mode in ("digest", "reads"):
        report = validate_live(server.address, records(path), mode=mode)
        assert report.ok and report.equal == 4, report.table()
    c = server.client()
    for key, value in values.items():
        c.set(key, value[:-1] + bytes([value[-1] ^ 1]))
    for mode in ("digest", "reads"):
        report = validate_live(server.address, records(path), mode=mode)
        assert report.different == 3 and report.equal == 1, report.table()


@pytest.mark.parametrize("how", [{"mode": "digest"}, {"mode": "reads"}, {"mode": "digest", "sample": 20}],
                         ids=["digest", "reads", "sample"])
def test_dataset_digest_is_folded_from_every_key(engine_server, how: dict) -> None:
    """``dataset`` gets every key the node should hold, whichever keys are compared and how."""
    server = start_fixture(engine_server, "redis-7.0")
    target = parse_target("redis-7.0")
    dataset = DatasetDigest(target.score_format, target.hexpire_marker)
    report = validate_live(server.address, records(fixture("redis-7.0")), dataset=dataset, **how)
    assert report.ok, report.table()
    assert dataset.keys == sum(fixture_counts("redis-7.0").values())
    assert dataset.hexdigest() == server.client().execute_command("DEBUG", "DIGEST").decode()


def test_raw_connection(engine_server) -> None:
    """Replies of every shape, predicted replies confirmed or left to parse, AUTH and SELECT."""
    server = engine_server("valkey-8.1", config={"requirepass": "raw pass"})
    big = bytes(range(256)) * 1024  # a reply that spans many reads
    with RespConnection(server.address, db=2) as conn:
        replies = conn.execute([("SET", "k", big), ("RPUSH", "l", "a", 7), ("GET", "nope"), ("INCR", "l"),
                                ("LRANGE", "l", 0, -1), ("PING",)])
        assert replies[:3] == [b"OK", 2, None] and replies[4:] == [[b"a", b"7"], b"PONG"]
        assert isinstance(replies[3], redis.ResponseError) and str(replies[3]).startswith("WRONGTYPE")
        request = encode("GET", "k") + encode_all([("LLEN", "l"), ("LLEN", "nope")])
        conn.send(request)
        assert conn.matches(bulk(big) + b":2\r\n:0\r\n")
        conn.send(request)
        assert not conn.matches(bulk(big[:-1] + b"x") + b":2\r\n:0\r\n")  # differs in the last read
        assert conn.replies(3) == [big, 2, 0]
        conn.send(encode("LLEN", "l"))
        assert not conn.matches(b":3\r\n") and conn.reply() == 2
        conn.send(encode_all([("PTTL", "k"), ("LLEN", "l"), ("PTTL", "k"), ("GET", "k"), ("PTTL", "nope")]))
        assert conn.integers(2) == [-1, 2]  # all integers: read in one go
        assert conn.integers(3) == [-1, big, -2]  # a bulk among them: parsed one by one, nothing lost
    assert server.client(2).get("k") == big
    with pytest.raises(EngineError, match="authentication"):
        RespConnection(NodeAddress(server.host, server.port, password="wrong"))


# ------------------------------------------------------------------ a cluster from split files

@pytest.mark.parametrize("target", TARGETS)
def test_split_cluster_validates_and_misplaced_keys_are_found(get_engine, target: str, tmp_path: Path) -> None:
    engine = get_engine(target)
    source = [str(fixture(target))]
    layout = SlotLayout.even(3)
    shards = split(source, tmp_path, layout, db_map={1: 0, 5: 0}, on_duplicate="first").shards
    files = [str(tmp_path / shard.file) for shard in shards]

    def kept() -> Iterator[Record]:
        return selected_records(source, "first", map_db=lambda db, path: 0)

    password = "cluster pass"
    with LocalCluster(engine, layout, files, config={"requirepass": password, "masterauth": password}) as cluster:
        address = NodeAddress(cluster.nodes[2].host, cluster.nodes[2].port, password=password)
        for mode in ("auto", "reads"):
            report = validate_live(address, kept(), mode=mode)
            assert report.ok, report.table()
            assert report.mode == ("digest" if mode == "auto" else "reads")
            assert report.checked == report.equal == report.live_keys == report.expected_per_db[0] > 200
            assert report.slots_mismatched == report.misplaced == 0

        clients = [node.client() for node in cluster.nodes]
        moved, deleted = b"string:short", b"list:large"
        owner = layout.shard_of(key_slot(moved))
        wrong = (owner + 1) % 3
        slot = key_slot(moved)
        value = clients[owner].dump(moved)
        clients[owner].delete(moved)
        clients[layout.shard_of(key_slot(deleted))].delete(deleted)
        wrong_admin = clients[wrong]
        wrong_admin.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_ids[owner])
        pipe = wrong_admin.pipeline(transaction=False)  # one connection: ASKING applies to the RESTORE
        pipe.execute_command("ASKING")
        pipe.execute_command("RESTORE", moved, 0, value)
        pipe.execute()
        wrong_admin.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        assert wrong_admin.dbsize() == sum(wrong_admin.execute_command("CLUSTER", "COUNTKEYSINSLOT", s)
                                           for a, b in layout.shards[wrong].ranges for s in range(a, b + 1)) + 1

        for mode in ("digest", "reads"):
            report = validate_live(address, kept(), mode=mode)
            assert not report.ok
            assert report.missing == 2 and report.misplaced == 1 and report.different == 0, report.table()
            assert report.slots_mismatched == 2
            assert {s for s, _, _ in report.slot_mismatches} == {slot, key_slot(deleted)}
            assert any("holds 1 keys of slots it does not own" in p for p in report.problems)
        for client in clients:
            client.close()
