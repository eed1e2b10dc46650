"""The inner-encoding codecs against real engines: Redis 6.2 (ziplists, intsets), Redis 7.0 (listpacks,
quicklist 2) and Valkey 8.1 (set listpacks).

* Blobs the engines produce (taken from DUMP payloads) decode to what the commands return, and
  re-encode byte for byte.
* Payloads built with our encoders RESTORE under ``sanitize-dump-payload yes`` (Redis's deep
  validation), read back the same, and DUMP back to the same bytes.
* Mutated blobs: our decoders accept exactly what the engine's deep validation accepts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import lzf
import pytest
import redis

from snaptool.engines.discovery import Engine
from snaptool.engines.server import EngineServer
from snaptool.errors import RdbError
from snaptool.rdb.checksum import crc64
from snaptool.rdb.encodings.intset import decode_intset, encode_intset
from snaptool.rdb.encodings.listpack import decode_listpack, encode_listpack
from snaptool.rdb.encodings.ziplist import decode_ziplist, encode_ziplist
from snaptool.rdb.encodings.zipmap import decode_zipmap, encode_zipmap
from snaptool.rdb.primitives import encode_length

# Object types (RDB format §3.1) used here.
ZIPMAP, LIST_ZIPLIST, INTSET, ZSET_ZIPLIST, HASH_ZIPLIST, QUICKLIST = 9, 10, 11, 12, 13, 14
HASH_LISTPACK, ZSET_LISTPACK, QUICKLIST_2, SET_LISTPACK = 16, 17, 18, 20
PACKED = 2

INTS = [0, 1, 12, 13, 127, 128, -1, -128, -129, 4095, 4096, -4096, -4097, 32767, 32768, -32768, -32769,
        8388607, 8388608, -8388608, -8388609, 2147483647, 2147483648, -2147483648, -2147483649,
        9223372036854775807, -9223372036854775808]
NON_INTS = [b"", b"-0", b"007", b"+5", b"1.5", b"9223372036854775808", b"a" * 63, b"b" * 64]


def _serve(engine: Engine) -> Iterator[redis.Redis]:
    """A module-long client of a fresh server of ``engine`` with deep payload validation on."""
    with EngineServer(engine, config={"sanitize-dump-payload": "yes"}) as server, server.client() as client:
        yield client


@pytest.fixture(scope="module")
def redis62(get_engine: Callable[[str], Engine]) -> Iterator[redis.Redis]:
    yield from _serve(get_engine("redis-6.2"))


@pytest.fixture(scope="module")
def redis70(get_engine: Callable[[str], Engine]) -> Iterator[redis.Redis]:
    yield from _serve(get_engine("redis-7.0"))


@pytest.fixture(scope="module")
def valkey81(get_engine: Callable[[str], Engine]) -> Iterator[redis.Redis]:
    yield from _serve(get_engine("valkey-8.1"))


# --- DUMP payloads -------------------------------------------------------------------------------

def _read_length(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 0x40:
        return first, pos + 1
    if first < 0x80:
        return (first & 0x3F) << 8 | buf[pos + 1], pos + 2
    assert first == 0x80, f"unexpected length byte {first:#x}"
    return int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    """A raw or LZF-compressed RDB String (blobs are never int-encoded)."""
    if buf[pos] == 0xC3:
        clen, pos = _read_length(buf, pos + 1)
        ulen, pos = _read_length(buf, pos)
        return lzf.decompress(buf[pos:pos + clen], ulen), pos + clen
    n, pos = _read_length(buf, pos)
    return buf[pos:pos + n], pos + n


def dump_blobs(client: redis.Redis, key: str, rdb_version: int) -> tuple[int, list[bytes]]:
    """The object type and the inner blobs (one, or one per quicklist node) of a DUMP payload."""
    payload = client.dump(key)
    assert int.from_bytes(payload[-10:-8], "little") == rdb_version
    assert crc64(payload[:-8]) == int.from_bytes(payload[-8:], "little")
    kind, body = payload[0], payload[1:-10]
    if kind in (QUICKLIST, QUICKLIST_2):
        nodes, pos = _read_length(body, 0)
        blobs = []
        for _ in range(nodes):
            if kind == QUICKLIST_2:
                container, pos = _read_length(body, pos)
                assert container == PACKED
            blob, pos = _read_string(body, pos)
            blobs.append(blob)
    else:
        blob, pos = _read_string(body, 0)
        blobs = [blob]
    assert pos == len(body)
    return kind, blobs


def make_payload(kind: int, blobs: list[bytes], rdb_version: int) -> bytes:
    """A DUMP payload for one blob, or for quicklist nodes: type, value, version, CRC-64."""
    if kind == QUICKLIST:
        value = encode_length(len(blobs)) + b"".join(encode_length(len(b)) + b for b in blobs)
    elif kind == QUICKLIST_2:
        value = encode_length(len(blobs)) + b"".join(
            encode_length(PACKED) + encode_length(len(b)) + b for b in blobs)
    else:
        [blob] = blobs
        value = encode_length(len(blob)) + blob
    body = bytes((kind,)) + value + rdb_version.to_bytes(2, "little")
    return body + crc64(body).to_bytes(8, "little")


def as_bytes(item: bytes | int) -> bytes:
    """How the server reports an element: integers as decimal text."""
    return b"%d" % item if isinstance(item, int) else item


def score_text(score: float) -> bytes:
    """The score string Redis stores in a zset listpack/ziplist, for scores where all its formatters agree."""
    return b"%d" % score if score == int(score) else b"%r" % score


def flat(pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [x for pair in pairs for x in pair]


def pairs_of(items: list[bytes | int]) -> list[tuple[bytes, bytes]]:
    it = iter(map(as_bytes, items))
    return list(zip(it, it))


HASH_PAIRS = [(b"f%d" % i, as_bytes(v)) for i, v in enumerate([*INTS, *NON_INTS])] + [(b"12", b"x"), (b"", b"")]
ZSET_SCORES = {b"m-a": 1, b"m-b": 2.5, b"m-c": -3, b"m-d": 1e6, b"m-e": 0.5, b"17": 17, b"m-f": -1.25,
               b"m-g": 2 ** 40, b"m-h": 0}


def hash_from(client: redis.Redis, pairs: list[tuple[bytes, bytes]]) -> None:
    client.delete("h")
    for field, value in pairs:  # one at a time so the insertion order is ours
        client.hset("h", field, value)


def zset_items(client: redis.Redis) -> list[bytes]:
    return flat([(m, score_text(s)) for m, s in client.zrange("z", 0, -1, withscores=True)])


def check_roundtrip_bytes(decode: Callable[[bytes], list], encode: Callable[[list], bytes], blob: bytes) -> list:
    """Decode an engine's blob and check our encoder rebuilds the same bytes."""
    items = decode(blob)
    assert encode(items) == blob
    return items


def check_hash_blob(client: redis.Redis, rdb_version: int, kind: int, decode: Callable[[bytes], list],
                    encode: Callable[[list], bytes]) -> None:
    """HASH_PAIRS in a small hash: the engine's one blob decodes to them, in order, and is what we encode."""
    hash_from(client, HASH_PAIRS)
    got_kind, [blob] = dump_blobs(client, "h", rdb_version)
    assert got_kind == kind
    items = check_roundtrip_bytes(decode, encode, blob)
    assert pairs_of(items) == HASH_PAIRS
    assert dict(pairs_of(items)) == client.hgetall("h")
    assert blob == encode(flat(HASH_PAIRS))


def check_zset_blob(client: redis.Redis, rdb_version: int, kind: int, decode: Callable[[bytes], list],
                    encode: Callable[[list], bytes]) -> None:
    """ZSET_SCORES in a small zset: the engine's one blob holds them in score order, as we encode them."""
    client.delete("z")
    client.zadd("z", ZSET_SCORES)
    got_kind, [blob] = dump_blobs(client, "z", rdb_version)
    assert got_kind == kind
    items = check_roundtrip_bytes(decode, encode, blob)
    assert [(m, float(s)) for m, s in pairs_of(items)] == client.zrange("z", 0, -1, withscores=True)
    assert blob == encode(zset_items(client))


def check_list_nodes(client: redis.Redis, elements: list[bytes], rdb_version: int, kind: int,
                     decode: Callable[[bytes], list], encode: Callable[[list], bytes]) -> None:
    """A list too big for one quicklist node: every node round-trips and together they hold ``elements``."""
    client.delete("l")
    client.rpush("l", *elements)
    got_kind, blobs = dump_blobs(client, "l", rdb_version)
    assert got_kind == kind and len(blobs) > 1
    items = [x for blob in blobs for x in check_roundtrip_bytes(decode, encode, blob)]
    assert [as_bytes(x) for x in items] == client.lrange("l", 0, -1) == elements


# --- Redis 6.2: ziplists and intsets --------------------------------------------------------------

def test_redis62_hash_ziplist(redis62: redis.Redis) -> None:
    check_hash_blob(redis62, 9, HASH_ZIPLIST, decode_ziplist, encode_ziplist)


def test_redis62_zset_ziplist(redis62: redis.Redis) -> None:
    check_zset_blob(redis62, 9, ZSET_ZIPLIST, decode_ziplist, encode_ziplist)


@pytest.mark.parametrize("members,width", [([5, -3, 0, 32767], 2), ([5, -70000], 4), ([1 << 40, -1], 8)])
def test_redis62_intset(redis62: redis.Redis, members: list[int], width: int) -> None:
    redis62.delete("s")
    redis62.sadd("s", *members)
    kind, [blob] = dump_blobs(redis62, "s", 9)
    assert kind == INTSET
    assert blob[0] == width
    assert decode_intset(blob) == sorted(int(m) for m in redis62.smembers("s"))
    assert blob == encode_intset(members)


def test_redis62_list_quicklist(redis62: redis.Redis) -> None:
    elements = [*map(as_bytes, INTS), *NON_INTS, b"p" * 300, b"7", b"q" * 16384, b"r" * 20000]
    check_list_nodes(redis62, elements, 9, QUICKLIST, decode_ziplist, encode_ziplist)


def test_redis62_restores_our_blobs(redis62: redis.Redis) -> None:
    zset_pairs = [(m, score_text(s)) for m, s in sorted(ZSET_SCORES.items(), key=lambda kv: (kv[1], kv[0]))]
    elements = [*map(as_bytes, INTS), *NON_INTS, b"p" * 300]
    cases = [
        ("h", HASH_ZIPLIST, [encode_ziplist(flat(HASH_PAIRS))]),
        ("z", ZSET_ZIPLIST, [encode_ziplist(flat(zset_pairs))]),
        ("s", INTSET, [encode_intset(INTS)]),
        ("l", QUICKLIST, [encode_ziplist(elements[:10]), encode_ziplist(elements[10:])]),
    ]
    for key, kind, blobs in cases:
        redis62.restore(key, 0, make_payload(kind, blobs, 9), replace=True)
        assert dump_blobs(redis62, key, 9) == (kind, blobs)
    assert redis62.hgetall("h") == dict(HASH_PAIRS)
    assert redis62.zrange("z", 0, -1, withscores=True) == [(m, float(s)) for m, s in zset_pairs]
    assert sorted(int(m) for m in redis62.smembers("s")) == sorted(INTS)
    assert redis62.lrange("l", 0, -1) == elements
    # Legacy encodings 6.2 converts on load.
    redis62.restore("l2", 0, make_payload(LIST_ZIPLIST, [encode_ziplist(elements)], 9), replace=True)
    assert redis62.lrange("l2", 0, -1) == elements
    zipmap_pairs = [(b"field", b"value"), (b"n", b"42"), (b"long", b"v" * 60)]
    redis62.restore("zm", 0, make_payload(ZIPMAP, [encode_zipmap(zipmap_pairs)], 9), replace=True)
    assert redis62.hgetall("zm") == dict(zipmap_pairs)
    assert dump_blobs(redis62, "zm", 9) == (HASH_ZIPLIST, [encode_ziplist(flat(zipmap_pairs))])


# --- Redis 7.0: listpacks and quicklist 2 ---------------------------------------------------------

def test_redis70_hash_listpack(redis70: redis.Redis) -> None:
    check_hash_blob(redis70, 10, HASH_LISTPACK, decode_listpack, encode_listpack)


def test_redis70_zset_listpack(redis70: redis.Redis) -> None:
    check_zset_blob(redis70, 10, ZSET_LISTPACK, decode_listpack, encode_listpack)


def test_redis70_list_quicklist2(redis70: redis.Redis) -> None:
    # Sizes around every string form and backlen width; the big ones force several nodes.
    elements = [*map(as_bytes, INTS), *NON_INTS, b"c" * 4095, b"d" * 4096, b"e" * 16377, b"f" * 16378,
                random.Random(7).randbytes(3000), b"42"]
    check_list_nodes(redis70, elements, 10, QUICKLIST_2, decode_listpack, encode_listpack)


def test_redis70_restores_our_blobs(redis70: redis.Redis) -> None:
    zset_pairs = [(m, score_text(s)) for m, s in sorted(ZSET_SCORES.items(), key=lambda kv: (kv[1], kv[0]))]
    elements = [*map(as_bytes, INTS), *NON_INTS, b"p" * 300, b"g" * 16378]
    nodes = [encode_listpack(elements[:5]), encode_listpack(elements[5:30]), encode_listpack(elements[30:])]
    cases = [
        ("h", HASH_LISTPACK, [encode_listpack(flat(HASH_PAIRS))]),
        ("z", ZSET_LISTPACK, [encode_listpack(flat(zset_pairs))]),
        ("s", INTSET, [encode_intset(INTS)]),
        ("l", QUICKLIST_2, nodes),
    ]
    for key, kind, blobs in cases:
        redis70.restore(key, 0, make_payload(kind, blobs, 10), replace=True)
        assert dump_blobs(redis70, key, 10) == (kind, blobs)
    assert redis70.hgetall("h") == dict(HASH_PAIRS)
    assert redis70.zrange("z", 0, -1, withscores=True) == [(m, float(s)) for m, s in zset_pairs]
    assert redis70.lrange("l", 0, -1) == elements
    # Ziplist and zipmap payloads (RDB 9) are deep-validated and converted to listpacks by 7.0, which
    # then builds exactly the listpack our encoder builds.
    legacy = [
        ("h9", HASH_ZIPLIST, encode_ziplist(flat(HASH_PAIRS)), HASH_LISTPACK, flat(HASH_PAIRS)),
        ("z9", ZSET_ZIPLIST, encode_ziplist(flat(zset_pairs)), ZSET_LISTPACK, flat(zset_pairs)),
        ("m9", ZIPMAP, encode_zipmap(HASH_PAIRS), HASH_LISTPACK, flat(HASH_PAIRS)),
    ]
    for key, kind, blob, new_kind, items in legacy:
        redis70.restore(key, 0, make_payload(kind, [blob], 9), replace=True)
        assert dump_blobs(redis70, key, 10) == (new_kind, [encode_listpack(items)])
    redis70.restore("l9", 0, make_payload(LIST_ZIPLIST, [encode_ziplist(elements[:30])], 9), replace=True)
    assert redis70.lrange("l9", 0, -1) == elements[:30]
    redis70.restore("q9", 0, make_payload(QUICKLIST, [encode_ziplist(elements[:9]), encode_ziplist(elements[9:])],
                                          9), replace=True)
    assert redis70.lrange("q9", 0, -1) == elements


# --- Valkey 8.1: set listpacks --------------------------------------------------------------------

def test_valkey81_set_listpack(valkey81: redis.Redis) -> None:
    members = [b"first", *map(as_bytes, INTS), *NON_INTS[:-2], b"\x00\xff"]
    valkey81.delete("s")
    for member in members:  # one at a time so the insertion order is ours
        valkey81.sadd("s", member)
    kind, [blob] = dump_blobs(valkey81, "s", 11)
    assert kind == SET_LISTPACK
    items = check_roundtrip_bytes(decode_listpack, encode_listpack, blob)
    assert [as_bytes(x) for x in items] == members
    assert set(members) == valkey81.smembers("s")
    assert blob == encode_listpack(members)


def test_valkey81_other_encodings(valkey81: redis.Redis) -> None:
    hash_from(valkey81, HASH_PAIRS)
    assert dump_blobs(valkey81, "h", 11) == (HASH_LISTPACK, [encode_listpack(flat(HASH_PAIRS))])
    valkey81.delete("i")
    valkey81.sadd("i", *INTS)
    assert dump_blobs(valkey81, "i", 11) == (INTSET, [encode_intset(INTS)])
    valkey81.delete("l")
    valkey81.rpush("l", *map(as_bytes, INTS))
    kind, blobs = dump_blobs(valkey81, "l", 11)  # a small list is saved as a one-node quicklist
    assert (kind, blobs) == (QUICKLIST_2, [encode_listpack(INTS)])


def test_valkey81_restores_our_blobs(valkey81: redis.Redis) -> None:
    members = [b"m%d" % i for i in range(50)] + [b"-7", b"300", b"x" * 64]
    blob = encode_listpack(members)
    valkey81.restore("s", 0, make_payload(SET_LISTPACK, [blob], 11), replace=True)
    assert valkey81.smembers("s") == set(members)
    assert dump_blobs(valkey81, "s", 11) == (SET_LISTPACK, [blob])
    nodes = [encode_listpack(INTS[:10]), encode_listpack(NON_INTS)]
    valkey81.restore("l", 0, make_payload(QUICKLIST_2, nodes, 11), replace=True)
    assert valkey81.lrange("l", 0, -1) == [*map(as_bytes, INTS[:10]), *NON_INTS]


# --- Mutated blobs: same verdict as the engine's deep validation ----------------------------------

def mutate(rng: random.Random, blob: bytes, fix_size: bool) -> bytes:
    """A few random edits; often the u32 byte count is then fixed so the entry walk is what gets tested."""
    data = bytearray(blob)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        at = rng.randrange(len(data)) if data else 0
        if op < 0.35 and data:
            data[at] = rng.choice([0x00, 0x01, 0x02, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xD0, 0xE0, 0xF0, 0xF1,
                                   0xF4, 0xFE, 0xFF, rng.randrange(256)])
        elif op < 0.6 and data:
            data[at] ^= 1 << rng.randrange(8)
        elif op < 0.7:
            del data[at:at + rng.randint(1, 4)]
        elif op < 0.8:
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        elif op < 0.9 and data:  # small changes to header fields: sizes, zltail, counts
            data[rng.randrange(min(len(data), 10))] ^= 1 << rng.randrange(3)
        else:
            del data[at:]
    if fix_size and len(data) >= 4 and rng.random() < 0.7:
        data[0:4] = len(data).to_bytes(4, "little")
    return bytes(data)


def verdict(decode: Callable[[bytes], list], blob: bytes, accepts: Callable[[list], bool]) -> bool:
    try:
        return accepts(decode(blob))
    except RdbError:
        return False


def engine_verdict(client: redis.Redis, payload: bytes) -> bool:
    try:
        client.restore("fuzz", 0, payload, replace=True)
    except redis.ResponseError as exc:
        assert "Bad data format" in str(exc)
        return False
    return True


def unique_firsts(items: list, step: int) -> bool:
    firsts = [as_bytes(x) for x in items[::step]]
    return len(set(firsts)) == len(firsts)


FUZZ_ELEMENTS = [b"a", 0, 5, 300, -70000, 1 << 40, b"x" * 70, b"", b"abc", 12, b"z" * 300]


@pytest.mark.parametrize("name,kind,version,blob,decode,fix_size,accepts", [
    ("list listpack", QUICKLIST_2, 10, encode_listpack(FUZZ_ELEMENTS), decode_listpack, True, bool),
    ("hash listpack", HASH_LISTPACK, 10, encode_listpack(FUZZ_ELEMENTS[:10]), decode_listpack, True,
     lambda items: bool(items) and len(items) % 2 == 0 and unique_firsts(items, 2)),
    ("list ziplist", LIST_ZIPLIST, 9, encode_ziplist(FUZZ_ELEMENTS), decode_ziplist, True, bool),
    ("quicklist ziplist node", QUICKLIST, 9, encode_ziplist(FUZZ_ELEMENTS), decode_ziplist, True, bool),
    ("intset", INTSET, 9, encode_intset([-70000, -5, 0, 7, 300, 1 << 20]), decode_intset, False, bool),
    ("zipmap", ZIPMAP, 9, encode_zipmap([(b"a", b"1"), (b"bb", b"x" * 20), (b"c" * 300, b"")]), decode_zipmap,
     False, lambda pairs: unique_firsts([f for f, _ in pairs], 1)),
])
def test_mutations_match_redis70(redis70: redis.Redis, name: str, kind: int, version: int, blob: bytes,
                                 decode: Callable[[bytes], list], fix_size: bool,
                                 accepts: Callable[[list], bool]) -> None:
    rng = random.Random(f"snaptool-{name}")
    disagreements = []
    accepted = 0
    for _ in range(250):
        mutant = mutate(rng, blob, fix_size)
        ours = verdict(decode, mutant, accepts)
        theirs = engine_verdict(redis70, make_payload(kind, [mutant], version))
        accepted += theirs
        if ours != theirs:
            disagreements.append((mutant.hex(), ours, theirs))
    assert not disagreements, disagreements[:5]
    assert accepted  # the mutations are not all trivially fatal
