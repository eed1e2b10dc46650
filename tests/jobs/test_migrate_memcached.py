"""memcached → Redis migrations against real memcached 1.6 (Debian) and real engines.

Every assertion compares the target with what memcached itself holds (read back independently of
the migration: pymemcache ``get_many`` with flags for text keys, meta ``mg b`` for binary ones) and
with the TTLs the test set, never with the migration's own report alone.
"""

from __future__ import annotations

import base64
import hashlib
import pickle
import random
import socket
import threading
import time
import zlib

import pytest
import redis

from snaptool.engines.cluster import LocalCluster
from snaptool.engines.memcached_conn import CannotEnumerate, MemcachedAddress
from snaptool.engines.memcached_dump import text_safe
from snaptool.engines.memcached_server import MemcachedServer, find_memcached
from snaptool.engines.server import EngineServer
from snaptool.errors import EngineError, SnaptoolError, ValidationError
from snaptool.jobs.drill import drill
from snaptool.jobs.fetch import fetch
from snaptool.jobs.migrate_flags import FlagsPolicy, FlagsRefused, open_envelope
from snaptool.jobs.migrate_memcached import DuplicateKeys, MigrateOptions, migrate_memcached
from snaptool.jobs.seed import SeedOptions, seed
from snaptool.jobs.split import split
from snaptool.jobs.validate import validate_cluster
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.reader import RdbReader
from snaptool.rdb.slots import SlotLayout
from snaptool.storage.catalog import Catalog
from snaptool.storage.repository import Repository

pytestmark = pytest.mark.skipif(find_memcached() is None, reason="memcached not installed")

ENGINE = "redis-7.0"
DAY = 86400


# --------------------------------------------------------------------------- memcached side

def meta_set(address: MemcachedAddress, items: list[tuple[bytes, bytes, int, int]], token: bytes | None = None) -> None:
    """Store (key, value, flags, exptime) with meta `ms` (base64 `b` for binary keys), then wait for MN."""
    with socket.create_connection((address.host, address.port)) as sock:
        if token:
            sock.sendall(b"set auth 0 0 %d\r\n%b\r\n" % (len(token), token))
            assert sock.recv(64) == b"STORED\r\n"
        for start in range(0, len(items), 2000):
            body = b"".join(b"ms %b %d F%d T%d q\r\n%b\r\n" % (k, len(v), f, t, v) if text_safe(k) else
                            b"ms %b %d b F%d T%d q\r\n%b\r\n" % (base64.b64encode(k), len(v), f, t, v)
                            for k, v, f, t in items[start:start + 2000])
            sock.sendall(body + b"mn\r\n")
            got = b""
            while not got.endswith(b"MN\r\n"):
                got += sock.recv(1 << 16)
            assert got == b"MN\r\n", got[:200]


def memcached_holds(address: MemcachedAddress, keys: list[bytes]) -> dict[bytes, tuple[bytes, int]]:
    """What the server holds now, read independently: pymemcache for text keys, `mg b` for the rest."""
    from pymemcache.client.base import Client

    class Serde:
        @staticmethod
        def deserialize(key, value, flags):  # noqa: ANN001, ANN205
            return value, flags

        @staticmethod
        def serialize(key, value):  # noqa: ANN001, ANN205
            return value, 0

    out: dict[bytes, tuple[bytes, int]] = {}
    client = Client((address.host, address.port), serde=Serde())
    text = [k for k in keys if text_safe(k)]
    for start in range(0, len(text), 500):
        out.update(client.get_many(text[start:start + 500]))
    client.close()
    with socket.create_connection((address.host, address.port)) as sock:
        for key in (k for k in keys if not text_safe(k)):
            sock.sendall(b"mg %b b v f\r\n" % base64.b64encode(key))
            data = b""
            while b"\r\n" not in data:
                data += sock.recv(1 << 20)
            if data.startswith(b"EN"):
                continue
            head, rest = data.split(b"\r\n", 1)
            size = int(head.split()[1])
            while len(rest) < size + 2:
                rest += sock.recv(1 << 20)
            out[key] = (rest[:size], int(head.split()[2][1:]))
    return out


def dataset(count: int, seed: int = 7, big: bool = True) -> list[tuple[bytes, bytes, int, int]]:
    """(key, value, flags, exptime): TTLs none / relative / absolute beyond 30 days, binary and UTF-8
    keys, values of 0 bytes to 1 MB (5 MB with -I 8m), flags of the common client conventions."""
    rng = random.Random(seed)
    now = int(time.time())
    conventions = [  # (flags, value) as the clients write them
        (1, pickle.dumps({"user": 1, "tags": ["a", "b"]})),  # pymemcache / python-memcached pickle
        (2, b"12345"),  # python int
        (8, zlib.compress(b"compressible " * 50)),  # python zlib
        (16, "текст".encode()),  # python text
        (1, b"\xac\xed\x00\x05t\x00\x03abc"),  # spymemcached Java serialization
        (2, b"\x1f\x8b\x08\x00gzip"),  # spymemcached gzip
        (4, b'a:1:{s:1:"k";i:1;}'),  # php-memcached serialize
        (1, b"\x04\x08I\"\x06a\x06:\x06ET"),  # Dalli Marshal
        (4294967295, b"max 32-bit flags"),
    ]
    items = []
    for i in range(count):
        kind = i % 10
        if kind < 5:
            key, flags, value = b"user:%06d" % i, 0, rng.randbytes(rng.choice((0, 1, 16, 100, 400)))
        elif kind < 7:
            key, flags, value = b"sess:%06d" % i, 0, b"session-%d" % i
        elif kind == 7:
            flags, value = conventions[i % len(conventions)]
            key = b"conv:%d:%06d" % (flags, i)
        elif kind == 8:
            key, flags, value = "ключ:%06d".encode() % i, 0, b"utf8"
        else:
            key, flags, value = b"bin\x00\r\n key %06d\xff" % i, 3, rng.randbytes(20)
        ttl = (0, 3600, now + 40 * DAY)[i % 3]  # none, relative, absolute (> 30 days)
        items.append((key, value, flags, ttl))
    if big:
        items += [(b"big:%d" % n, rng.randbytes(1_000_000), 0, 0) for n in range(4)]
        items += [(b"huge:%d" % n, rng.randbytes(5 << 20), 7, 3600) for n in range(2)]  # needs -I 8m
    return items


@pytest.fixture(scope="module")
def loaded() -> tuple[MemcachedServer, dict[bytes, tuple[bytes, int, int]], float]:
    with MemcachedServer(["-I", "8m"], memory_mb=512) as mc:
        items = dataset(100_000)
        started = time.time()
        meta_set(mc.address, items)
        yield mc, {k: (v, f, t) for k, v, f, t in items}, (started, time.time())


# --------------------------------------------------------------------------- target side

def target_holds(clients: list[redis.Redis], route, keys: list[bytes]) -> dict[bytes, tuple[bytes, int, float]]:  # noqa: ANN001
    """key -> (value, PTTL, when it was read) for keys present, each read from the node that owns it."""
    out = {}
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(route(key), []).append(key)
    for node, node_keys in groups.items():
        for start in range(0, len(node_keys), 2000):
            chunk = node_keys[start:start + 2000]
            pipe = clients[node].pipeline(transaction=False)
            for key in chunk:
                pipe.get(key)
                pipe.pttl(key)
            replies = pipe.execute()
            read_at = time.time()
            for at, key in enumerate(chunk):
                if replies[2 * at] is not None:
                    out[key] = (replies[2 * at], replies[2 * at + 1], read_at)
    return out


def assert_migrated(held_by_memcached: dict, target: dict, expected: dict, set_between: tuple[float, float],
                    value_of=lambda v, f: v) -> None:  # noqa: ANN001
    """Every key memcached holds is in the target with the same bytes and its remaining TTL (a
    relative TTL counts from when the key was set, somewhere in ``set_between``; memcached and the
    TTL check both count in whole seconds, hence the 2 s margins)."""
    assert set(target) == set(held_by_memcached)
    first, last = set_between
    for key, (value, flags) in held_by_memcached.items():
        got, pttl, now = target[key]
        assert got == value_of(value, flags), key
        exptime = expected[key][2]
        if exptime == 0:
            assert pttl == -1, key
        elif exptime > 30 * DAY:  # an absolute time, which memcached counts on its own clock: that
            # clock ticks in whole seconds from a start time it rounds, so it may run a second or two
            # off the wall clock (memcached's remaining TTL is what the migration copies, on purpose)
            assert abs(pttl - (exptime - now) * 1000) < 3500, (key, pttl)
        else:
            assert (exptime - (now - first)) * 1000 - 2000 <= pttl <= (exptime - (now - last)) * 1000 + 2000, \
                (key, pttl)


def node_route(key: bytes) -> int:
    return 0


# --------------------------------------------------------------------------- the three targets

def test_100k_keys_into_a_node(loaded, engine_server) -> None:
    mc, expected, set_between = loaded
    target = engine_server(ENGINE)
    report = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, flags=FlagsPolicy.parse("hash:mcflags")))
    keys = list(expected)
    held = memcached_holds(mc.address, keys)
    assert len(held) == len(expected)  # nothing expired: every key is there to compare
    client = target.client()
    assert_migrated(held, target_holds([client], node_route, keys), expected, set_between)
    flags = {k: int(v) for k, v in client.hgetall(b"mcflags").items()}
    assert flags == {k: f for k, (_, f) in held.items() if f}  # non-zero flags kept, zero flags not stored
    assert client.dbsize() == len(held) + 1
    assert report.ok and report.check.equal == len(held) and report.written == len(held)
    assert report.inventory.nonzero == len(flags)
    # the value magic sampled per (prefix, flags): every client convention of the data set is recognised
    kinds = {r["flags"]: set(r["values"]) for r in report.inventory.rows() if r["prefix"] == "conv:"}
    assert {"pickle", "java-serialized", "ruby-marshal"} <= kinds[1]
    assert {"gzip", "text"} <= kinds[2] and kinds[8] == {"zlib"} and kinds[4] == {"php-serialize"}
    assert report.sources[0].enumeration == "metadump hash" and report.sources[0].fetch == "mg"


def test_100k_keys_into_a_three_shard_cluster(loaded, get_engine) -> None:
    mc, expected, set_between = loaded
    with LocalCluster(get_engine(ENGINE), SlotLayout.even(3), [None] * 3) as cluster:
        report = migrate_memcached(MigrateOptions((mc.endpoint,), to=cluster.url, flags=FlagsPolicy("envelope"),
                                                  workers=3))
        clients = [n.client() for n in cluster.nodes]
        layout = SlotLayout.even(3)
        keys = list(expected)
        held = memcached_holds(mc.address, keys)
        in_target = target_holds(clients, lambda k: layout.shard_of(key_slot(k)), keys)
        assert_migrated(held, in_target, expected, set_between, value_of=lambda v, f: open_envelope_check(v, f))
        assert sum(c.dbsize() for c in clients) == len(held)
        assert all(c.dbsize() > len(held) // 4 for c in clients)  # spread over the three shards
        assert report.ok and report.check.equal == len(held)


def open_envelope_check(value: bytes, flags: int) -> bytes:
    """The enveloped form the target must hold (the test builds it itself, then checks it opens)."""
    wrapped = (b"\x01" + flags.to_bytes(4, "big") if flags < 1 << 32 else b"\x02" + flags.to_bytes(8, "big")) + value
    assert open_envelope(wrapped) == (value, flags)
    return wrapped


def test_100k_keys_into_an_rdb_file(loaded, tmp_path, get_engine) -> None:
    mc, expected, set_between = loaded
    report = migrate_memcached(MigrateOptions((mc.endpoint,), to_dir=str(tmp_path / "seed"),
                                              flags=FlagsPolicy("ignore")))
    path = tmp_path / "seed" / "dump.rdb"
    assert report.file == str(path) and report.ok
    assert [p.name for p in (tmp_path / "seed").iterdir()] == ["dump.rdb"]  # no temporary left
    with RdbReader.open(path) as reader:
        assert reader.read_header().version == 9  # redis-6.2 by default: loads on 5.0+ and every Valkey
    # an engine other than the one the migration checked with loads it and serves every key
    with EngineServer(get_engine("valkey-8.1"), rdb=path) as server:
        keys = list(expected)
        held = memcached_holds(mc.address, keys)
        assert_migrated(held, target_holds([server.client()], node_route, keys), expected, set_between)
        assert server.client().dbsize() == len(held)


def test_a_snapshot_in_a_repository(tmp_path, get_engine) -> None:
    """The snapshot then goes through the other jobs: a drill, and a split into 3 shards that a
    local cluster loads and matches key for key."""
    with MemcachedServer() as mc:
        items = dataset(3000, big=False)
        meta_set(mc.address, items)
        repo = Repository.open(str(tmp_path / "repo"))
        report = migrate_memcached(MigrateOptions((mc.endpoint,), repo=repo, flags=FlagsPolicy("ignore"),
                                                  tags=("from-memcached",)))
        manifest = Catalog(repo).resolve("latest")
        assert manifest.id == report.snapshot and "memcached" in manifest.id
        assert manifest.source["type"] == "memcached" and manifest.tags == ["from-memcached"]
        assert manifest.keys == len(items) == report.check.equal
        assert manifest.files[0].databases[0].expires == sum(1 for _, _, _, t in items if t)
    drilled = drill(report.snapshot, repo)
    assert drilled.ok and drilled.keys == len(items), drilled.to_json()
    (fetched,) = fetch(repo, manifest, str(tmp_path / "fetched"))
    layout = SlotLayout.even(3)
    shards = split([fetched.path], tmp_path / "shards", layout)
    assert shards.keys_out == len(items) and all(sum(s.keys.values()) for s in shards.shards)
    with RdbReader.open(fetched.path) as reader:
        validation = validate_cluster(get_engine(ENGINE), layout, [str(tmp_path / "shards" / s.file)
                                                                   for s in shards.shards], reader.records())
    assert validation.ok and validation.equal == len(items), validation.table()


def test_a_snapshot_in_s3_is_drilled_and_seeded(s3_bucket, tmp_path, get_engine) -> None:
    """--repo s3://bucket/prefix on moto's S3 server; the snapshot is drilled there, then seeded into
    another bucket, and the seed object an engine loads holds what memcached holds."""
    import boto3

    with MemcachedServer() as mc:
        items = dataset(2000, big=False)
        started = time.time()
        meta_set(mc.address, items)
        set_between = (started, time.time())
        repo = Repository.open(f"s3://{s3_bucket}/redis")
        report = migrate_memcached(MigrateOptions((mc.endpoint,), repo=repo, flags=FlagsPolicy.parse("hash:mcflags")))
        assert report.ok and report.check.equal == len(items)
        s3 = boto3.client("s3")
        stored = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
        assert stored and all(key.startswith(f"redis/snapshots/{report.snapshot}/") for key in stored), stored
        drilled = drill(report.snapshot, repo)
        assert drilled.ok and drilled.keys == len(items) + 1, drilled.to_json()  # + the side hash
        s3.create_bucket(Bucket=f"{s3_bucket}-seed")
        plan = seed(report.snapshot, repo, SeedOptions(to=f"s3://{s3_bucket}-seed/dr"))
        (item,) = plan.objects
        assert item.key == f"dr/{report.snapshot}.rdb" and plan.rdb_version == 9
        body = s3.get_object(Bucket=f"{s3_bucket}-seed", Key=item.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == item.sha256 and len(body) == item.size
        (tmp_path / "seed.rdb").write_bytes(body)
        with EngineServer(get_engine(ENGINE), rdb=tmp_path / "seed.rdb") as server:
            expected = {k: (v, f, t) for k, v, f, t in items}
            held = memcached_holds(mc.address, list(expected))
            client = server.client()
            assert_migrated(held, target_holds([client], node_route, list(expected)), expected, set_between)
            flags = {k: int(v) for k, v in client.hgetall(b"mcflags").items()}
            assert flags == {k: f for k, (_, f) in held.items() if f} and client.dbsize() == len(held) + 1


# --------------------------------------------------------------------------- refusals and policies

def test_nonzero_flags_without_a_policy_write_nothing(engine_server) -> None:
    with MemcachedServer() as mc:
        meta_set(mc.address, [(b"a:%d" % i, pickle.dumps(i), 1, 0) for i in range(30)] +
                 [(b"b:%d" % i, b"plain", 0, 0) for i in range(70)])
        target = engine_server(ENGINE)
        with pytest.raises(FlagsRefused) as info:
            migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url))
        assert info.value.exit_code == 3 and "--flags" in str(info.value)
        rows = {(r["prefix"], r["flags"]): r for r in info.value.inventory.rows()}
        assert rows[("a:", 1)]["keys"] == 30 and rows[("a:", 1)]["values"] == {"pickle": 30}
        assert rows[("b:", 0)]["keys"] == 70
        assert target.client().dbsize() == 0  # nothing half-written


@pytest.mark.parametrize("into, listing", [("node", "auto"), ("file", "auto"), ("node", "all")])
def test_keys_written_during_the_run_are_copied(engine_server, get_engine, tmp_path, into: str,
                                                listing: str) -> None:
    """A writer changes, deletes and adds keys while the first pass reads (and finishes before the
    second listing starts, so the end state is known): the target then holds exactly what
    memcached holds, plus the keys deleted after they were read, which the report counts. With
    ``metadump all`` (forced) the writer is done before the first walk's keys are all read, so the
    second walk of the first listing finds the late keys; the second listing's cas still catches
    the keys changed after they were read."""
    with MemcachedServer() as mc:
        stable = [(b"stable:%05d" % i, b"v%d" % i, 0, 0) for i in range(20000)]
        churn = [b"churn:%d" % i for i in range(200)]
        late = [b"late:%d" % n for n in range(1, 1001)]
        meta_set(mc.address, stable + [(key, b"old", 1, 0) for key in churn])
        deletes = 0

        def writer() -> None:
            nonlocal deletes
            from pymemcache.client.base import Client
            client = Client((mc.host, mc.port))
            for n in range(1, len(late) + 1):
                client.set(churn[n % 200], b"new-%d" % n, flags=n % 2)  # values and flags change
                client.set(late[n - 1], b"late", expire=3600)
                if n % 7 == 0:
                    deletes += client.delete(churn[(n + 100) % 200], noreply=False)
            client.close()

        ran = threading.Event()

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage.startswith("read") and not ran.is_set():  # the first pass is reading: write meanwhile
                ran.set()
                writer()

        target = engine_server(ENGINE) if into == "node" else None
        options = MigrateOptions((mc.endpoint,), flags=FlagsPolicy.parse("hash:mcflags"), enumerate=listing,
                                 to=target.url if target else None, to_dir=None if target else str(tmp_path / "out"))
        report = migrate_memcached(options, progress)
        held = memcached_holds(mc.address, churn + late)
        if target is None:  # the file loads (no key twice) into another engine and holds the same
            target = EngineServer(get_engine("valkey-8.1"), rdb=tmp_path / "out" / "dump.rdb").start()
        try:
            client = target.client()
            source = report.sources[0]
            assert report.ok and deletes  # churn is reported, not counted as loss
            assert client.mget([k for k, _, _, _ in stable]) == [v for _, v, _, _ in stable]
            # every churned or late key memcached still holds arrived with its last value and flags
            got = dict(zip(churn + late, client.mget(churn + late)))
            flagged = client.hgetall(b"mcflags")
            assert len(held) > len(late) and {k: got[k] for k in held} == {k: v for k, (v, _) in held.items()}
            assert {k: int(flagged[k]) for k in held if k in flagged} == {k: f for k, (_, f) in held.items() if f}
            # keys deleted after the first pass read them are still copied: exactly the count reported
            stale = [k for k in churn if k not in held and got[k] is not None]
            assert source.gone_after_read == len(stale)
            assert source.vanished + source.gone_after_read <= deletes  # each needed a delete of its own
            assert source.changed <= len(churn)
            if listing == "all":  # the second walk found the late keys, the third nothing new
                assert source.passes == 3 and source.repeated >= len(stable)
            else:  # one walk, before the late keys: the second listing found them
                assert source.passes == 1 and source.repeated == 0 and 0 < source.changed + source.new
            # what the target holds: the first pass, the keys new in the second listing
            assert source.read + source.new == len(stable) + len(held) + len(stale) == report.written
            assert all(client.exists(k) for k in flagged)  # no field outlives its key's flags
            assert client.dbsize() == report.written + 1
        finally:
            target.stop()


def test_items_expiring_during_the_run_are_skipped_and_counted(engine_server) -> None:
    with MemcachedServer() as mc:
        items = [(b"k:%05d" % i, b"v", 0, 2 if i % 100 == 0 else 0) for i in range(20000)]
        meta_set(mc.address, items)
        target = engine_server(ENGINE)
        slept = []

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage.startswith("read") and not slept:
                slept.append(True)
                time.sleep(2.5)  # the 2-second keys not read yet expire now

        report = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, workers=1), progress)
        short = {k for k, _, _, t in items if t}
        client = target.client()
        present = [k for k in short if client.exists(k)]
        for key in present:
            assert client.pttl(key) > 0  # never written with a TTL of 0 or a past time
        source = report.sources[0]
        expired = source.expired + report.check.expired  # the check counts those not written as well
        assert expired > 0 and expired + len(present) == len(short)
        assert report.ok and client.dbsize() == len(items) - expired


def test_relative_ttls_start_when_sent_and_the_check_sees_tampering(engine_server) -> None:
    with MemcachedServer() as mc:
        items = [(b"k:%05d" % i, b"v%d" % i, i % 3, 3600 if i % 2 else 0) for i in range(300)]  # less than a batch
        meta_set(mc.address, items)
        target = engine_server(ENGINE)
        client = target.client()

        def slow(stage: str, done: int, total: int | None) -> None:
            if stage == "write" and done == total:
                time.sleep(2.5)  # whatever was written must already be on its way, its TTL counting

        report = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, flags=FlagsPolicy.parse("hash:f")),
                                   slow)
        assert report.ok and report.check.equal == len(items)
        assert max(client.pttl(k) for k, *_ in items[1::2]) <= 3600 * 1000 - 2000

        def tamper(stage: str, done: int, total: int | None) -> None:
            if stage == "write" and done == total:
                deadline = time.monotonic() + 10  # until the migration's own writes of these keys have landed
                while client.hget(b"f", b"k:00004") != b"1" or client.exists(b"k:00000", b"k:00001", b"k:00003") < 3:
                    assert time.monotonic() < deadline, "the migration's writes never arrived"
                    time.sleep(0.01)
                client.set(b"k:00000", b"changed")  # another value
                client.persist(b"k:00001")  # the TTL dropped
                client.delete(b"k:00003")  # gone
                client.hset(b"f", b"k:00004", b"9")  # other flags

        client.flushall()
        with pytest.raises(ValidationError) as info:
            migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, flags=FlagsPolicy.parse("hash:f")), tamper)
        check = info.value.report.check
        assert (check.different, check.ttl_off, check.missing, check.flags_off) == (1, 1, 1, 1)
        assert check.equal == len(items) - 4 and info.value.exit_code == 4


def test_a_server_whose_keys_cannot_be_listed_is_refused(engine_server) -> None:
    with MemcachedServer(["-o", "no_lru_crawler"]) as mc:
        meta_set(mc.address, [(b"k", b"v", 0, 0)])
        target = engine_server(ENGINE)
        with pytest.raises(CannotEnumerate, match="crawler is disabled.*dual-write"):
            migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url))
        assert target.client().dbsize() == 0


def test_ascii_auth(engine_server, tmp_path) -> None:
    auth = tmp_path / "auth.txt"
    auth.write_text("alice:s3cret\n")
    with MemcachedServer(["-Y", str(auth)]) as mc:
        items = [(b"k:%d" % i, b"v%d" % i, 0, 0) for i in range(500)]
        meta_set(mc.address, items, token=b"alice s3cret")
        target = engine_server(ENGINE)
        with pytest.raises(EngineError, match="--auth-file"):
            migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url))
        report = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, auth_file=str(auth)))
        assert report.ok and target.client().mget([k for k, *_ in items]) == [v for _, v, *_ in items]


def test_target_dies_mid_run_then_a_rerun_completes(engine_server) -> None:
    with MemcachedServer() as mc:
        items = [(b"k:%05d" % i, b"v%d" % i, 0, 3600 if i % 2 else 0) for i in range(30000)]
        meta_set(mc.address, items)
        target = engine_server(ENGINE, config={"appendonly": "yes", "appendfsync": "always"})

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage == "write" and done >= 10000 and target.running:
                target.process.kill()
                target.process.wait()

        with pytest.raises(EngineError, match="lost the connection to redis://.*--replace") as info:
            migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url), progress)
        assert "Traceback" not in str(info.value)
        # the node comes back (on a new port) with what its AOF had: part of the keys
        target.start()
        partial = target.client().dbsize()
        assert 0 < partial < len(items)
        with pytest.raises(SnaptoolError, match="already holds"):
            migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url))
        report = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, replace=True))
        assert report.ok and target.client().dbsize() == len(items)
        assert target.client().mget([k for k, *_ in items]) == [v for _, v, *_ in items]


def test_several_servers_and_duplicates(engine_server) -> None:
    with MemcachedServer() as one, MemcachedServer() as two:
        meta_set(one.address, [(b"a:%d" % i, b"one", 0, 0) for i in range(100)] + [(b"dup:1", b"from-one", 0, 0)])
        meta_set(two.address, [(b"b:%d" % i, b"two", 0, 0) for i in range(100)] + [(b"dup:1", b"from-two", 0, 0)])
        target = engine_server(ENGINE)
        with pytest.raises(DuplicateKeys, match="dup:1.*--on-duplicate"):
            migrate_memcached(MigrateOptions((one.endpoint, two.endpoint), to=target.url))
        assert target.client().dbsize() == 0
        report = migrate_memcached(MigrateOptions((one.endpoint, two.endpoint), to=target.url, on_duplicate="last"))
        client = target.client()
        assert client.get(b"dup:1") == b"from-two" and client.dbsize() == 201
        assert report.duplicates == 1 and report.ok
        client.flushall()
        migrate_memcached(MigrateOptions((one.endpoint, two.endpoint), to=target.url, on_duplicate="first"))
        assert client.get(b"dup:1") == b"from-one"


def test_dry_run_prefix_and_the_fallbacks(engine_server, tmp_path) -> None:
    with MemcachedServer() as mc:
        items = [(b"k:%d" % i, b"v%d" % i, 0, 0 if i % 2 else 600) for i in range(3000)]
        meta_set(mc.address, items + [(b"has:flags", b"x", 9, 0)])
        target = engine_server(ENGINE)
        dry = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, dry_run=True))
        assert dry.listed == 3001 and "--flags" in dry.would_refuse and target.client().dbsize() == 0
        assert (dry.sources[0].passes, dry.sources[0].repeated) == (1, 0)  # one hash walk
        # memcached before 1.6.10 is read with gets, before 1.6.9 listed with `metadump all`: forced here
        report = migrate_memcached(MigrateOptions((mc.endpoint,), to=target.url, key_prefix=b"mc:",
                                                  flags=FlagsPolicy("ignore"), fetch="gets", enumerate="all"))
        source = report.sources[0]
        assert source.fetch == "gets" and source.enumeration == "metadump all"
        # every key listed and read once; later walks list keys again (dropped). A walk may miss an item
        # the LRU maintainer moves between segments as `gets` bumps it, so the walk count and the
        # repeats vary: a miss in the first walk makes the second find something new and a third run
        assert source.listed == source.read == 3001 and 2 <= source.passes <= 3
        assert 0 < source.repeated <= 3001 * (source.passes - 1)
        client = target.client()
        assert client.dbsize() == 3001 and client.get(b"mc:has:flags") == b"x"
        assert client.mget([b"mc:" + k for k, *_ in items]) == [v for _, v, *_ in items]
        assert 590_000 <= client.pttl(b"mc:k:0") <= 600_000 and client.pttl(b"mc:k:1") == -1
        assert report.check.equal == 3001


@pytest.mark.parametrize("ring", ["ketama", "ketama:3,1", "modula", "modula:1,2"])
def test_the_ring_picks_the_copy_the_clients_read(engine_server, ring: str) -> None:
    """Both servers hold a stale copy of every key; the clients then write the fresh one where their
    ring sends it: python-memcached itself for modula, the server uhashring names for ketama."""
    import memcache
    from uhashring import HashRing

    from snaptool.engines.memcached_ring import Ring

    weights = [int(w) for w in ring.partition(":")[2].split(",")] if ":" in ring else [1, 1]
    keys = [b"dup:%d" % i for i in range(300)]
    with MemcachedServer() as one, MemcachedServer() as two:
        servers = [one, two]
        for mc in servers:
            meta_set(mc.address, [(k, b"stale-" + k, 0, 0) for k in keys] + [(b"only:%d" % mc.port, b"x", 0, 0)])
        if ring.startswith("modula"):
            client = memcache.Client([(mc.endpoint, w) for mc, w in zip(servers, weights)])
            for key in keys:
                assert client.set(key.decode(), b"fresh-" + key)
            client.disconnect_all()
        else:
            hashring = HashRing({mc.endpoint: {"weight": w} for mc, w in zip(servers, weights)}, hash_fn="ketama")
            for mc in servers:
                meta_set(mc.address, [(k, b"fresh-" + k, 0, 0) for k in keys
                                      if hashring.get_node(k.decode()) == mc.endpoint])
        fresh_on = [sum(v == b"fresh-" + k for k, (v, _) in memcached_holds(mc.address, keys).items())
                    for mc in servers]
        assert sum(fresh_on) == len(keys) and min(fresh_on) > 0, fresh_on  # the ring uses both servers
        target = engine_server(ENGINE)
        report = migrate_memcached(MigrateOptions((one.endpoint, two.endpoint), to=target.url, ring=Ring.parse(ring)))
        client = target.client()
        assert client.mget(keys) == [b"fresh-" + k for k in keys]
        assert client.dbsize() == len(keys) + 2
        assert report.duplicates == report.ring_chosen == len(keys) and report.ring == ring and report.ok


def test_a_ring_naming_a_server_without_the_key_refuses(engine_server) -> None:
    from uhashring import HashRing

    from snaptool.engines.memcached_ring import Ring

    with MemcachedServer() as one, MemcachedServer() as two, MemcachedServer() as three:
        names = [mc.endpoint for mc in (one, two, three)]
        hashring = HashRing(names, hash_fn="ketama")
        keys = [b"k:%d" % i for i in range(50) if hashring.get_node("k:%d" % i) == three.endpoint][:5]
        for mc in (one, two):
            meta_set(mc.address, [(k, mc.endpoint.encode(), 0, 0) for k in keys])
        target = engine_server(ENGINE)
        with pytest.raises(DuplicateKeys, match="--ring ketama maps them to a server holding no copy"):
            migrate_memcached(MigrateOptions(tuple(names), to=target.url, ring=Ring.parse("ketama")))
        assert target.client().dbsize() == 0
        report = migrate_memcached(MigrateOptions(tuple(names), to=target.url, ring=Ring.parse("ketama"),
                                                  on_duplicate="first"))
        assert target.client().mget(keys) == [one.endpoint.encode()] * len(keys)
        assert report.duplicates == len(keys) and report.ring_chosen == 0
