"""snaptool.rdb.digest against live engines: DEBUG DIGEST and DEBUG DIGEST-VALUE.

Each engine (Redis 6.2 and 7.0 with "%.17g" scores, Valkey 8.1 with fpconv scores) is started
once for the module with EngineServer (its tests are skipped when it is not found), populated
with every type, and the digests the server computes are compared with the offline
implementation fed the values read back with ordinary commands.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import pytest

from snaptool.engines.server import EngineServer
from snaptool.rdb import model
from snaptool.rdb.digest import DatasetDigest, score_text, string_digest, value_digest

#: Engines the digests are checked against, and how each prints zset scores.
SCORE_FORMATS = {"redis-6.2": "%.17g", "redis-7.0": "%.17g", "valkey-8.1": "fpconv"}


@pytest.fixture(scope="module", params=list(SCORE_FORMATS))
def engine(request, get_engine):
    name = request.param
    # One connection: the tests SELECT other databases and expect it to stick.
    with EngineServer(get_engine(name)) as server, server.client(protocol=2, single_connection_client=True) as client:
        client.set_response_callback("XRANGE", lambda resp, **kw: resp)  # raw [id, [f, v, ...]] pairs
        populate(client)
        yield name, client, SCORE_FORMATS[name]


@contextmanager
def scratch_db(r, db: int):
    """SELECT an otherwise unused database for the block; empty it and go back to db 0 afterwards."""
    r.execute_command("SELECT", db)
    try:
        yield
    finally:
        r.execute_command("SELECT", db)
        r.flushdb()
        r.execute_command("SELECT", 0)


# --------------------------------------------------------------------------- dataset

# -0.0 is left out of SCORES: Redis 7.0+ listpack zsets store an integral score as an integer, so
# a small zset turns -0.0 into 0 (only the skiplist encoding keeps the sign); see NEG_ZERO below.
SCORES = [
    0.0, 1.0, -1.0, 2.5, -3.0, 0.1, 1 / 3, 1e8, 1e-7, 1e22, 1.5e300, 5e-324, 2.2250738585072014e-308,
    1.7976931348623157e308, -2.5e-10, 583224.493447588, 3.377064907195565e16, 123456789012.25,
    float("inf"), float("-inf"), 9007199254740993.0, 12345678.0, -0.0001,
]


def populate(r) -> None:
    rnd = random.Random(20240607)
    # db 0
    p = r.pipeline(transaction=False)
    p.execute_command("SELECT", 0)
    p.set(b"s:plain", b"hello world")
    p.set(b"s:int", b"12345")
    p.set(b"s:negint", b"-9223372036854775808")
    p.set(b"s:binary", bytes(range(256)))
    p.set(b"s:empty", b"")
    p.set(b"s:long", b"x" * 5000)
    p.set(b"\x00bin\xffkey", b"v")
    p.set(b"s:ttl", b"expiring", px=3_600_000)
    p.rpush(b"l:small", b"a", b"1", b"-7", b"", b"\x00\x01")
    p.rpush(b"l:large", *[str(i).encode() if i % 3 else b"elem-%d" % i for i in range(1000)])
    p.rpush(b"l:ttl", b"x", b"y")
    p.pexpire(b"l:ttl", 3_600_000)
    p.sadd(b"set:int", 1, 2, -5, 1000000, 9223372036854775807)
    p.sadd(b"set:small", b"a", b"b", b"c", b"12")
    p.sadd(b"set:large", *[b"m%d" % i for i in range(700)])
    p.zadd(b"z:small", {b"m%d" % i: s for i, s in enumerate(SCORES)})
    p.zadd(b"z:ints", {b"1": 1, b"2": 2, b"300": -3})
    p.zadd(b"z:large", {b"member:%d" % i: rnd.uniform(-1e6, 1e6) * 10 ** rnd.randint(-8, 8) for i in range(300)})
    p.zadd(b"z:largespecial", {**{b"n%d" % i: float(i) for i in range(200)}, **{b"s%d" % i: s for i, s in enumerate(SCORES)}})
    p.zadd(b"z:largespecial", {b"negzero": -0.0})
    p.hset(b"h:small", mapping={b"f1": b"v1", b"f2": b"2", b"num": b"-17", b"empty": b""})
    p.hset(b"h:large", mapping={b"field:%d" % i: b"value:%d" % (i * 7) for i in range(700)})
    p.hset(b"h:bigvalue", mapping={b"a": b"y" * 200})
    p.hset(b"h:ttl", mapping={b"a": b"1"})
    p.pexpire(b"h:ttl", 3_600_000)
    p.execute()
    # streams
    r.execute_command("XADD", b"st:main", "1000-0", "temp", "21", "hum", "40")
    r.execute_command("XADD", b"st:main", "1000-1", "temp", "22", "hum", "41")
    r.execute_command("XADD", b"st:main", "1001-5", "other", "x", "dup", "1", "dup", "2")
    r.execute_command("XADD", b"st:main", "2000-0", "temp", "23", "hum", "42")
    r.execute_command("XADD", b"st:main", "2500-3", "\x00bin", "\xff")
    r.execute_command("XDEL", b"st:main", "1000-1")
    r.execute_command("XGROUP", "CREATE", b"st:main", "g1", "0")
    r.execute_command("XREADGROUP", "GROUP", "g1", "alice", "COUNT", "2", "STREAMS", b"st:main", ">")
    r.execute_command("XADD", b"st:big", "*", "k", "v")
    for i in range(300):
        r.execute_command("XADD", b"st:big", "*", "idx", str(i), "payload", "p" * (i % 17))
    r.execute_command("XADD", b"st:emptied", "5-5", "a", "b")
    r.execute_command("XDEL", b"st:emptied", "5-5")
    # db 1
    r.execute_command("SELECT", 1)
    r.set(b"s:plain", b"hello world")  # same key and value as in db 0
    r.set(b"db1:int", b"7", px=3_600_000)
    r.zadd(b"z:db1", {b"a": 0.5, b"b": 1e-300})
    r.sadd(b"set:db1", 3, 4)
    # db 2 stays empty; db 5 has one key
    r.execute_command("SELECT", 5)
    r.rpush(b"l:db5", b"only")
    r.execute_command("SELECT", 0)


def read_value(r, key: bytes):
    """(kind, value, has_expire) read back with ordinary commands."""
    kind = r.type(key).decode()
    has_expire = r.pttl(key) >= 0
    if kind == "string":
        value = r.get(key)
    elif kind == "list":
        value = r.lrange(key, 0, -1)
    elif kind == "set":
        value = list(r.smembers(key))
    elif kind == "zset":
        value = r.zrange(key, 0, -1, withscores=True)
    elif kind == "hash":
        value = [(f, v, None) for f, v in r.hgetall(key).items()]
    elif kind == "stream":
        entries = []
        for entry_id, flat in r.execute_command("XRANGE", key, "-", "+"):
            ms, seq = entry_id.split(b"-")
            fields = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
            entries.append(model.StreamEntry(id=(int(ms), int(seq)), fields=fields))
        last = entries[-1].id if entries else (0, 0)
        value = model.StreamValue(entries=entries, length=len(entries), last_id=last)
    else:
        raise AssertionError(f"unexpected type {kind}")
    return kind, value, has_expire


def all_keys(r, db: int) -> list[bytes]:
    r.execute_command("SELECT", db)
    return sorted(r.scan_iter(count=1000))


def digest_values(r, keys) -> list[bytes]:
    return [bytes.fromhex(h.decode()) for h in r.execute_command("DEBUG", "DIGEST-VALUE", *keys)]


# --------------------------------------------------------------------------- tests


def test_digest_value_every_key(engine):
    name, r, fmt = engine
    checked = 0
    for db in (0, 1, 5):
        keys = all_keys(r, db)
        assert keys
        served = digest_values(r, keys)
        for key, want in zip(keys, served):
            kind, value, has_expire = read_value(r, key)
            got = value_digest(kind, value, has_expire=has_expire, score_format=fmt, hexpire_marker=False)
            assert got.hex() == want.hex(), (name, db, key, kind)
            # No hash here has field TTLs, so the Redis 7.4 marker must not change anything.
            assert value_digest(kind, value, has_expire=has_expire, score_format=fmt, hexpire_marker=True) == want
            checked += 1
    r.execute_command("SELECT", 0)
    assert checked > 25


def test_dataset_digest(engine):
    name, r, fmt = engine
    dd = DatasetDigest(fmt, False)
    for db in range(16):
        keys = all_keys(r, db)
        # Within a db the order must not matter.
        random.Random(db).shuffle(keys)
        for key in keys:
            kind, value, has_expire = read_value(r, key)
            dd.add(db, key, kind, value, has_expire=has_expire)
    r.execute_command("SELECT", 0)
    assert dd.hexdigest() == r.execute_command("DEBUG", "DIGEST").decode(), name


def test_dataset_add_returns_each_keys_digest_value(engine):
    """One pass over a value gives both its share of DEBUG DIGEST and its DEBUG DIGEST-VALUE."""
    name, r, fmt = engine
    dd = DatasetDigest(fmt, False)
    strings = 0
    for db in (0, 1, 5):
        keys = all_keys(r, db)
        for key, want in zip(keys, digest_values(r, keys)):
            kind, value, has_expire = read_value(r, key)
            assert dd.add(db, key, kind, value, has_expire=has_expire) == want, (name, db, key, kind)
            if kind == "string":
                assert string_digest(value, has_expire) == want, (name, db, key)
                strings += 1
    r.execute_command("SELECT", 0)
    assert strings > 5


def test_digest_value_includes_expire_marker(engine):
    name, r, fmt = engine
    with scratch_db(r, 3):
        r.set(b"ttl:probe", b"value")
        plain = value_digest("string", b"value", has_expire=False, score_format=fmt, hexpire_marker=False)
        with_ttl = value_digest("string", b"value", has_expire=True, score_format=fmt, hexpire_marker=False)
        assert plain != with_ttl
        assert digest_values(r, [b"ttl:probe"]) == [plain]
        r.pexpire(b"ttl:probe", 10_000_000)
        assert digest_values(r, [b"ttl:probe"]) == [with_ttl]
        r.pexpire(b"ttl:probe", 20_000_000)  # only the presence of a TTL counts
        assert digest_values(r, [b"ttl:probe"]) == [with_ttl]
        r.persist(b"ttl:probe")
        assert digest_values(r, [b"ttl:probe"]) == [plain]
        # A missing key gives 40 zeros.
        assert digest_values(r, [b"ttl:missing"]) == [bytes(20)]


def test_consumer_groups_do_not_count(engine):
    name, r, fmt = engine
    with scratch_db(r, 4):
        r.execute_command("XADD", b"st:g", "1-1", "a", "b")
        r.execute_command("XADD", b"st:g", "2-2", "c", "d")
        before = digest_values(r, [b"st:g"])
        r.execute_command("XGROUP", "CREATE", b"st:g", "grp", "0")
        r.execute_command("XREADGROUP", "GROUP", "grp", "bob", "STREAMS", b"st:g", ">")
        after = digest_values(r, [b"st:g"])
        assert before == after
        entries = (model.StreamEntry((1, 1), [(b"a", b"b")]), model.StreamEntry((2, 2), [(b"c", b"d")]))
        stream = model.StreamValue(entries=list(entries), length=2, last_id=(2, 2))
        assert value_digest("stream", stream, has_expire=False, score_format=fmt, hexpire_marker=False) == after[0]


def test_written_values_and_iterables(engine):
    """Values as written (not read back), passed as one-shot generators."""
    name, r, fmt = engine
    with scratch_db(r, 6):
        lst = [b"%d" % i for i in range(300)] + [b"tail"]
        zs = [(b"m%d" % i, s) for i, s in enumerate(SCORES)]
        hs = [(b"f%d" % i, b"v%d" % i, None) for i in range(50)]
        st = [b"x", b"y", b"17"]
        r.rpush(b"gen:l", *lst)
        r.zadd(b"gen:z", {m: repr(s) for m, s in zs})
        r.hset(b"gen:h", mapping={f: v for f, v, _ in hs})
        r.sadd(b"gen:s", *st)
        served = digest_values(r, [b"gen:l", b"gen:z", b"gen:h", b"gen:s"])
        ours = [
            value_digest("list", iter(lst), has_expire=False, score_format=fmt, hexpire_marker=False),
            value_digest("zset", (x for x in zs), has_expire=False, score_format=fmt, hexpire_marker=False),
            value_digest("hash", (x for x in hs), has_expire=False, score_format=fmt, hexpire_marker=False),
            value_digest("set", reversed(st), has_expire=False, score_format=fmt, hexpire_marker=False),
        ]
        assert [d.hex() for d in ours] == [d.hex() for d in served]
        # The dataset digest with db 6 fed from the written values, the other dbs read back.
        dd = DatasetDigest(score_format=fmt, hexpire_marker=False)
        for db in (0, 1, 5):
            for key in all_keys(r, db):
                kind, value, has_expire = read_value(r, key)
                dd.add(db, key, kind, value, has_expire=has_expire)
        dd.add(6, b"gen:s", "set", iter(st), has_expire=False)
        dd.add(6, b"gen:z", "zset", iter(zs), has_expire=False)
        dd.add(6, b"gen:l", "list", iter(lst), has_expire=False)
        dd.add(6, b"gen:h", "hash", iter(hs), has_expire=False)
        assert dd.hexdigest() == r.execute_command("DEBUG", "DIGEST").decode()


def test_zset_scores_read_back_match_written(engine):
    """The server stores exactly the double whose repr() was sent, so its text is score_text()."""
    name, r, fmt = engine
    got = dict(r.zrange(b"z:small", 0, -1, withscores=True))
    for i, s in enumerate(SCORES):
        assert got[b"m%d" % i] == s
        assert score_text(got[b"m%d" % i], fmt) == score_text(s, fmt)


# --------------------------------------------------------------------------- offline checks


def test_empty_dataset_is_zero():
    assert DatasetDigest("fpconv", False).hexdigest() == "0" * 40


def test_db_feeding_order_does_not_matter():
    """Files written by merges may list databases in any order; the digest must not care."""
    keys = [(2, b"k"), (2, b"k2"), (1, b"k"), (5, b"x")]
    forward, backward = DatasetDigest("fpconv", False), DatasetDigest("fpconv", False)
    for db, key in keys:
        forward.add(db, key, "string", b"v", has_expire=False)
    for db, key in reversed(keys):
        backward.add(db, key, "string", b"v", has_expire=False)
    assert forward.hexdigest() == backward.hexdigest() != "0" * 40


def test_unknown_kind_and_format():
    with pytest.raises(ValueError):
        value_digest("nope", b"", has_expire=False, score_format="fpconv", hexpire_marker=False)
    with pytest.raises(ValueError):
        score_text(1.0, "%g")


def test_score_text_formats():
    assert score_text(0.1, "%.17g") == b"0.10000000000000001"
    assert score_text(0.1, "fpconv") == b"0.1"
    assert score_text(1e8, "%.17g") == b"100000000"
    assert score_text(1e8, "fpconv") == b"1e+8"
    assert score_text(float("inf"), "%.17g") == b"inf"
    assert score_text(float("-inf"), "fpconv") == b"-inf"
    assert score_text(-0.0, "fpconv") == b"-0"
    assert score_text(2.5, "%.17g") == score_text(2.5, "fpconv") == b"2.5"


def test_hexpire_marker_only_for_fields_with_ttl():
    """Redis 7.4+ field-TTL marker (no engine here has HFE with the marker; §8.2 describes it)."""
    from hashlib import sha1

    def xor(a, b):
        return bytes(x ^ y for x, y in zip(a, b))

    def mix(d, data):
        return sha1(xor(d, sha1(data).digest())).digest()

    fields = [(b"a", b"1", 1_900_000_000_000), (b"b", b"2", None)]
    d = mix(bytes(20), (4).to_bytes(4, "big"))
    for f, v, ttl in fields:
        e = mix(mix(bytes(20), f), v)
        if ttl is not None:
            e = xor(e, sha1(b"!!hexpire!!").digest())
        d = xor(d, sha1(e).digest())
    with_marker = value_digest("hash", fields, has_expire=False, score_format="fpconv", hexpire_marker=True)
    without = value_digest("hash", fields, has_expire=False, score_format="fpconv", hexpire_marker=False)
    assert with_marker == d
    assert without != with_marker
    assert without == value_digest("hash", [(f, v, None) for f, v, _ in fields], has_expire=False,
                                   score_format="fpconv", hexpire_marker=True)


def test_module_contributes_only_its_type():
    mod = model.ModuleValue(name="xxxxxxxxx", encver=1, raw=b"")
    a = value_digest("module", mod, has_expire=False, score_format="fpconv", hexpire_marker=False)
    b = value_digest("module", model.ModuleValue("other", 2, b"\x01"), has_expire=False, score_format="fpconv",
                     hexpire_marker=False)
    assert a == b == sha1_of_type(5)


def sha1_of_type(t: int) -> bytes:
    from hashlib import sha1

    return sha1(sha1(t.to_bytes(4, "big")).digest()).digest()
