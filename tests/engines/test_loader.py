"""RestoreLoader against live engines: standalone nodes, a 3-node cluster, redirects, errors.

Every comparison is with what an engine holds: ``DEBUG DIGEST`` (or per key ``DEBUG
DIGEST-VALUE``) of the node the loader filled against a node of the same engine that loaded the
fixture file itself. The fixtures' function libraries are not keys (FUNCTION RESTORE is another
job) and do not enter DEBUG DIGEST.
"""

from __future__ import annotations

import io
import itertools
import random
import time
import tracemalloc
from pathlib import Path

import pytest
import redis

from snaptool.engines.address import NodeAddress
from snaptool.engines.cluster import LocalCluster
from snaptool.engines.discovery import find_engines
from snaptool.engines.loader import RestoreLoader
from snaptool.engines.server import EngineServer
from snaptool.errors import EngineError
from snaptool.jobs.convert import convert
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.slots import SlotLayout
from snaptool.rdb.source import Spill
from snaptool.rdb.targets import parse_target

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ENGINES = {e.target_name: e for e in find_engines()}


def rdb_version(path: Path) -> int:
    with RdbReader.open(path) as reader:
        return reader.read_header().version


STANDARD = ("redis-6.2", "redis-7.0", "valkey-8.1")
#: (fixture, engine): every fixture into its own engine and every engine that loads it
PAIRS = [(f, e) for f in ("redis-6.2", "redis-7.0", "valkey-8.1", "redis-6.2-lru", "redis-7.0-lfu")
         for e in ENGINES
         if ENGINES[e].can_load(rdb_version(FIXTURES / f"{f}.rdb"))]
LAYOUT = SlotLayout.even(3)
FUTURE = 2051222400000  # 2035


def engine(name: str):
    if name not in ENGINES:
        pytest.skip(f"{name} not found")
    return ENGINES[name]


def records(path: Path | bytes, **kwargs) -> list:
    reader = RdbReader(io.BytesIO(path)) if isinstance(path, bytes) else RdbReader.open(path, **kwargs)
    with reader:
        return list(reader.records())


def build(keys: list[tuple], target: str = "redis-7.0") -> bytes:
    """An RDB file of (key, kind, value[, expire_ms[, db]]) tuples."""
    out = io.BytesIO()
    builder = RdbBuilder(out, parse_target(target))
    for key, kind, value, *rest in keys:
        builder.add(key, kind, value, expire_ms=rest[0] if rest else None, db=rest[1] if len(rest) > 1 else 0)
    builder.finish()
    return out.getvalue()


def digest(server: EngineServer) -> bytes:
    return server.client().execute_command("DEBUG", "DIGEST")


def digest_values(client: redis.Redis, keys: list[bytes]) -> list[bytes]:
    return list(client.execute_command("DEBUG", "DIGEST-VALUE", *keys)) if keys else []


def keys_in_slot_of(shard: int, count: int, prefix: str = "k") -> list[bytes]:
    """``count`` keys sharing one slot owned by ``shard`` of LAYOUT (hash tags)."""
    for i in itertools.count():
        tag = f"{prefix}{i}"
        if LAYOUT.shard_of(key_slot(tag.encode())) == shard:
            return [f"{{{tag}}}:{n}".encode() for n in range(count)]
    raise AssertionError


# -- standalone -------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture,target", PAIRS, ids=[f"{f}->{e}" for f, e in PAIRS])
def test_fixture_restores_like_the_file(fixture: str, target: str) -> None:
    path = FIXTURES / f"{fixture}.rdb"
    with EngineServer(ENGINES[target], rdb=path) as loaded, EngineServer(ENGINES[target]) as server:
        with RestoreLoader(server.address) as loader, RdbReader.open(path) as reader:
            assert loader.target.name == target and not loader.cluster
            assert loader.nonempty() == {}
            counts = loader.add_all(reader.records())
        assert digest(server) == digest(loaded)
        assert counts.restored == 237 and counts.per_db == {0: 217, 1: 16, 5: 4}
        assert counts.per_node == {server.address.endpoint: 237}
        assert counts.expired_skipped == 0 and counts.redirects == 0
        assert counts.bytes > 70_000


def test_downgrade_valkey_to_redis62(tmp_path: Path) -> None:
    """Valkey 8.1 records (set listpacks, stream v3 …) re-encoded for Redis 6.2, compared per key
    with a 6.2 node that loaded the converted file."""
    redis62 = engine("redis-6.2")
    path = FIXTURES / "valkey-8.1.rdb"
    converted = tmp_path / "converted.rdb"
    convert(path, converted, parse_target("redis-6.2"), allow_lossy=True)  # functions dropped
    recs = records(path)
    with EngineServer(redis62, rdb=converted) as loaded, EngineServer(redis62) as server:
        with RestoreLoader(server.address) as loader:
            assert loader.target.name == "redis-6.2"
            for record in recs:
                loader.add(record)
            counts = loader.finish()
        assert counts.restored == 237 and counts.reencoded == 27  # listpacks, quicklists 2, streams v3
        a, b = loaded.client(), server.client()
        for db in sorted({r.db for r in recs}):
            keys = [r.key for r in recs if r.db == db]
            a.execute_command("SELECT", db)
            b.execute_command("SELECT", db)
            assert digest_values(b, keys) == digest_values(a, keys)
        assert digest(server) == digest(loaded)


def test_idle_and_freq_hints() -> None:
    """IDLETIME reaches an LRU node, FREQ an LFU node; the other hint is ignored, not refused."""
    srv = engine("redis-7.0")
    lru = records(FIXTURES / "redis-6.2-lru.rdb")
    lfu = records(FIXTURES / "redis-7.0-lfu.rdb")
    for i, record in enumerate(lru):
        record.idle = 1000 + 7 * i
    for i, record in enumerate(lfu):
        record.freq = 1 + i % 200
    with EngineServer(srv, config={"maxmemory-policy": "allkeys-lfu"}) as lfu_node, EngineServer(srv) as lru_node:
        for server in (lfu_node, lru_node):
            with RestoreLoader(server.address) as loader:
                for record in lru if server is lru_node else lfu:
                    loader.add(record)
                loader.add(records(build([(b"no-hint", "string", b"x")]))[0])
                other = records(FIXTURES / f"{'redis-7.0-lfu' if server is lru_node else 'redis-6.2-lru'}.rdb")[0]
                other.key, other.idle, other.freq = b"other-hint", other.idle and 50, other.freq and 50
                loader.add(other)
                assert loader.finish().restored == 239
        c = lru_node.client()
        for record in lru:
            c.execute_command("SELECT", record.db)
            assert record.idle <= c.object("idletime", record.key) <= record.idle + 5, record.key
        c = lfu_node.client()
        for record in lfu:
            c.execute_command("SELECT", record.db)
            # the counter decays by one per minute boundary crossed since the restore
            assert record.freq - 1 <= c.object("freq", record.key) <= record.freq, record.key


def test_existing_key_needs_replace() -> None:
    srv = engine("redis-7.0")
    recs = records(build([(b"a", "string", b"new-a"), (b"taken", "string", b"new", None, 2),
                          (b"z", "list", [b"1"])]))
    with EngineServer(srv) as server:
        c = server.client(db=2)
        c.set(b"taken", b"old")
        with RestoreLoader(server.address) as loader:
            assert loader.nonempty() == {"db2": 1}
            for record in recs:
                loader.add(record)
            with pytest.raises(EngineError, match=r"key 'taken' already exists on redis://127\.0\.0\.1:\d+ "
                                                  r"\(use --replace or --flush\)"):
                loader.finish()
        assert c.get(b"taken") == b"old"
        with RestoreLoader(server.address, replace=True) as loader:
            counts = loader.add_all(recs)
        assert counts.restored == 3 and counts.per_db == {0: 2, 2: 1}
        assert c.get(b"taken") == b"new"
        assert server.client().get(b"a") == b"new-a" and server.client().lrange(b"z", 0, -1) == [b"1"]


def test_flush_all_empties_every_database() -> None:
    with EngineServer(engine("redis-7.0")) as server:
        server.client(db=0).set(b"x", b"1")
        server.client(db=3).set(b"y", b"1")
        with RestoreLoader(server.address) as loader:
            assert loader.nonempty() == {"db0": 1, "db3": 1}
            loader.flush_all()
            assert loader.nonempty() == {}


def test_expired_records_are_skipped_and_counted() -> None:
    now = int(time.time() * 1000)
    recs = records(build([(b"past", "string", b"1", now - 1000), (b"past:list", "list", [b"a"], now - 5, 2),
                          (b"future", "string", b"2", FUTURE), (b"plain", "set", [b"m"], None, 2)]))
    with EngineServer(engine("redis-7.0")) as server:
        with RestoreLoader(server.address) as loader:
            counts = loader.add_all(recs)
            assert (counts.restored, counts.expired_skipped) == (2, 2)
            assert counts.per_db == {0: 1, 2: 1}
        c = server.client()
        assert c.keys() == [b"future"] and server.client(db=2).keys() == [b"plain"]
        assert c.execute_command("PEXPIRETIME", b"future") == FUTURE
        with RestoreLoader(server.address, replace=True) as loader:  # a later "now" expires more
            counts = loader.add_all(recs, now_ms=FUTURE)
            assert (counts.restored, counts.expired_skipped) == (1, 3)


def test_password_and_acl_user() -> None:
    recs = records(build([(b"k", "string", b"v"), (b"n", "string", b"42", None, 1)]))
    with EngineServer(engine("redis-6.2"), config={"requirepass": "s3cret"}) as server:
        with RestoreLoader(server.address) as loader:  # the address carries the password
            assert loader.add_all(recs).restored == 2
        assert server.client(db=1).get(b"n") == b"42"
        c = server.client()
        c.execute_command("ACL", "SETUSER", "loader", "on", ">pw2", "~*", "+@all")
        user = NodeAddress(server.host, server.port, username="loader", password="pw2")
        with RestoreLoader(user, replace=True) as loader:
            assert loader.add_all(recs).restored == 2
        with pytest.raises(EngineError, match="authentication to redis://127"):
            RestoreLoader(NodeAddress(server.host, server.port, password="wrong"))
        with pytest.raises(EngineError, match="authentication|NOAUTH"):
            RestoreLoader(NodeAddress(server.host, server.port))


def test_lost_connection_names_node_and_confirmed_keys() -> None:
    recs = records(build([(f"k{i}".encode(), "string", b"v") for i in range(50)]))
    server = EngineServer(engine("redis-7.0")).start()
    try:
        loader = RestoreLoader(server.address, batch_keys=10)
        for record in recs[:30]:
            loader.add(record)
        assert loader.finish().restored == 30
        server.stop()
        with pytest.raises(EngineError, match=r"connection to redis://127\.0\.0\.1:\d+ lost .*: 30 keys confirmed"):
            for record in recs[30:]:
                loader.add(record)
            loader.finish()
        loader.close()
    finally:
        server.stop()


def test_spilled_big_list_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 40 MB list read with a 1 MB spill threshold: restored equal, copied for 7.0 and re-encoded
    for 6.2, while Python's allocations stay far below the value's size (tracemalloc peak)."""
    path = tmp_path / "big.rdb"
    rng = random.Random(7)
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-7.0"))
        builder.add(b"big", "list", (rng.randbytes(4000) + b"%08d" % i for i in range(10_000)), expire_ms=FUTURE)
        builder.add(b"after", "string", b"small")
        builder.finish()
    assert path.stat().st_size > 38 << 20
    for name in ("redis-7.0", "redis-6.2"):
        srv = engine(name)
        loaded = EngineServer(srv, rdb=path).start() if name == "redis-7.0" else None
        with EngineServer(srv) as server, RdbReader.open(path, spill_threshold=1 << 20) as reader:
            with RestoreLoader(server.address) as loader:
                tracemalloc.start()
                try:
                    for record in reader.records():
                        assert isinstance(record.raw, Spill) == (record.key == b"big")
                        loader.add(record)
                        record.release()
                    counts = loader.finish()
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
            # copying streams 1 MB chunks; re-encoding builds the body in a spooled file that
            # stays in memory up to 8 MB before it moves to disk
            limit = 8 << 20 if loaded is not None else 16 << 20
            assert peak < limit, f"{name}: peak {peak >> 20} MB"
            assert counts.restored == 2 and counts.bytes > 38 << 20
            c = server.client()
            assert c.llen(b"big") == 10_000 and c.lindex(b"big", 9_999)[-8:] == b"00009999"
            if loaded is not None:
                assert digest(server) == digest(loaded)
                assert counts.reencoded == 0
                loaded.stop()
            else:
                assert counts.reencoded == 1
                assert c.object("encoding", b"big") == b"quicklist"


# -- cluster ----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=STANDARD)
def cluster(request):
    with LocalCluster(engine(request.param), LAYOUT, [None, None, None]) as built:
        yield built


def owner(cluster: LocalCluster, key: bytes) -> EngineServer:
    return cluster.nodes[LAYOUT.shard_of(key_slot(key))]


def test_cluster_restores_db0_to_owning_nodes(cluster: LocalCluster) -> None:
    name = cluster.engine.target_name
    path = FIXTURES / f"{name}.rdb"
    db0 = [r for r in records(path) if r.db == 0]
    first = cluster.nodes[0].address
    with RestoreLoader(first) as loader, EngineServer(cluster.engine, rdb=path) as loaded:
        loader.flush_all()
        assert loader.cluster and loader.target.name == name
        for record in db0:
            loader.add(record)
        counts = loader.finish()
        assert counts.restored == len(db0) == 217 and counts.redirects == 0
        assert sorted(counts.per_node) == sorted(n.address.endpoint for n in cluster.nodes)
        assert loader.nonempty() == {n.address.endpoint: counts.per_node[n.address.endpoint]
                                     for n in cluster.nodes}
        want = digest_values(loaded.client(), [r.key for r in db0])
        got = [digest_values(owner(cluster, r.key).client(), [r.key])[0] for r in db0]
        assert got == want
        other_db = next(r for r in records(path) if r.db == 1)
        with pytest.raises(EngineError, match=r"cluster, which has database 0 only: key .* is in db 1"):
            loader.add(other_db)
        loader.flush_all()
        assert loader.nonempty() == {}


def _myid(node) -> bytes:
    return node.client().execute_command("CLUSTER", "MYID")


def test_cluster_follows_moved(cluster: LocalCluster) -> None:
    keys = keys_in_slot_of(0, 5, "moved")
    slot = key_slot(keys[0])
    old, new = cluster.nodes[0], cluster.nodes[2]
    new_id, old_id = _myid(new), _myid(old)
    loader = RestoreLoader(old.address)
    try:
        loader.flush_all()
        for node in (new, *cluster.nodes[:2]):  # the slot changes hands after the loader read the map
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_id)
        for key in keys[:4]:
            loader.add(records(build([(key, "string", key)]))[0])
        counts = loader.finish()
        assert counts.redirects == 4 and counts.per_node == {new.address.endpoint: 4}
        loader.add(records(build([(keys[4], "string", b"x")]))[0])
        assert loader.finish().redirects == 4  # the map was updated: no new redirect
        assert new.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 5
        assert old.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    finally:
        loader.flush_all()
        loader.close()
        for node in (new, *cluster.nodes[:2]):  # the node giving the slot back first: no stale claim
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", old_id)


def test_cluster_follows_ask(cluster: LocalCluster) -> None:
    keys = keys_in_slot_of(1, 2, "ask")
    slot = key_slot(keys[0])
    source, importing = cluster.nodes[1], cluster.nodes[0]
    source_id, importing_id = _myid(source), _myid(importing)
    loader = RestoreLoader(source.address)
    try:
        loader.flush_all()
        importing.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", importing_id)
        for key in keys:
            loader.add(records(build([(key, "hash", [(b"f", key, None)])]))[0])
        counts = loader.finish()
        assert counts.redirects == 2 and counts.per_node == {importing.address.endpoint: 2}
        assert importing.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 2
        assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    finally:
        for node in (source, importing):
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        loader.flush_all()
        loader.close()


def test_value_over_the_bulk_limit_names_the_reason(tmp_path: Path) -> None:
    """A payload over the node's proto-max-bulk-len: the server's own complaint is in the error."""
    path = tmp_path / "over.rdb"
    path.write_bytes(build([(b"big", "string", random.Random(1).randbytes(3 << 20))]))
    with EngineServer(engine("redis-7.0"), config={"proto-max-bulk-len": "1mb"}) as server:
        with RestoreLoader(server.address) as loader, RdbReader.open(path, spill_threshold=1 << 20) as reader:
            with pytest.raises(EngineError, match=r"redis://127\.0\.0\.1:\d+.*invalid bulk length"):
                loader.add_all(reader.records())
