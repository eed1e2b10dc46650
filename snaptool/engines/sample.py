"""Deterministic sample data that exercises every type and encoding an engine has.

Used by the demo, the tests and ``scripts/make-fixtures``. :func:`populate` writes the data through
redis-py clients; :func:`keyspace_records` reads a keyspace back into plain JSON-able records (the
format of ``fixtures/*.jsonl``).

What :func:`populate` writes (db 0 unless noted; ``{p}`` is the key prefix, "" by default):

* strings: short text, int-encodable values at every RDB int boundary ("12345", "-7", 127,
  -128, 32767, -32768, 2^31-1, -2^31) and out-of-range/non-canonical numbers stored as text
  ("4294967296", "007", "1.5", ±2^63 limits), LZF-compressible 200 x "a" and larger text,
  incompressible random bytes, binary values with \\x00 and \\xff, an empty string, binary and
  non-ASCII *keys*, plus ``150 * scale`` generated simple keys (some with TTLs);
* lists: small (ziplist / listpack), one with every ziplist int width, large (> 128 elements,
  several quicklist nodes), one with a 10 KB element (a node of its own), ``list:plain`` with
  PLAIN quicklist nodes (Redis 7.0+ / Valkey, via DEBUG QUICKLIST-PACKED-THRESHOLD), and one
  created with ``list-compress-depth 1`` (LZF-compressed quicklist nodes) when CONFIG SET is
  allowed;
* sets: intsets with 16-, 32- and 64-bit members, small string sets (listpack on Redis 7.2+ /
  Valkey), a set with a 100-byte member, large (> 512) string and integer sets (hashtable);
* zsets: small (ziplist / listpack) with integral and fractional scores, one with inf, -inf,
  negative, 0, 0.1, 1e8 and 1e-7, one with a 100-byte member, large (> 128, skiplist) including
  the special scores;
* hashes: small (ziplist / listpack) with int-like values, binary fields, one with a value
  > 64 bytes, large (> 512 fields, hashtable);
* streams: 250 entries with explicit ids (three 100-entry nodes), same-field and different-field
  entries, XDEL'd entries, two consumer groups (``g1``: consumers alice and bob with pending
  entries, one acked, plus consumer dave without pending entries where XGROUP CREATECONSUMER
  exists; ``g2``: carol), an XTRIM'd stream, an empty stream with a group (XGROUP CREATE ...
  MKSTREAM) and a stream whose entries were all deleted;
* TTLs: absolute PEXPIREAT times in 2035 (``EXPIRE_BASE_MS`` = 2051222400000 plus a per-key offset)
  on strings and on one key of every collection type, in db 0 and db 1;
* databases 0, 1 and 5 (the same key name in db 0 and db 1 with different values; db 5 holds a
  stream with a group ``readers`` whose entries_read is known);
* functions (Redis >= 7.0 and Valkey): two Lua libraries loaded with FUNCTION LOAD REPLACE.

Everything is deterministic (``random.Random(SEED)``); re-running ``populate`` rewrites the same
keys (collections are deleted first), so it is idempotent.
"""

from __future__ import annotations

import base64
import json
import math
import random
import time
from typing import Any, Callable, Iterable, Sequence

import redis

from .discovery import Engine

SEED = 20240611
#: 2035-01-01T00:00:00Z in unix ms: every sample TTL is this plus a small per-key offset.
EXPIRE_BASE_MS = 2051222400000
DEFAULT_DATABASES = (0, 1, 5)
STREAM_BASE_MS = 1700000000000

ClientFactory = Callable[[int], redis.Redis]

FUNCTION_LIBRARIES = {
    "snaptool_sample": (
        "#!lua name=snaptool_sample\n"
        "local function echo(keys, args)\n"
        "  return args[1]\n"
        "end\n"
        "local function getkey(keys, args)\n"
        "  return redis.call('GET', keys[1])\n"
        "end\n"
        "redis.register_function('snaptool_echo', echo)\n"
        "redis.register_function{function_name='snaptool_get', callback=getkey, flags={'no-writes'}}\n"
    ),
    "snaptool_sample2": (
        "#!lua name=snaptool_sample2\n"
        "redis.register_function('snaptool_incr', function(keys, args)\n"
        "  return redis.call('INCR', keys[1])\n"
        "end)\n"
    ),
}


def _supports(engine: Engine, redis_from: tuple[int, ...], valkey: bool = True) -> bool:
    if engine.flavour == "valkey":
        return valkey
    return tuple(engine.version) >= redis_from


def populate(client_factory: ClientFactory, engine: Engine, *, scale: int = 1,
             databases: Sequence[int] = DEFAULT_DATABASES, prefix: str = "",
             functions: bool = True) -> None:
    """Write the sample data set (see the module docstring) through ``client_factory(db)``.

    ``databases`` limits which of db 0, 1 and 5 are written (pass ``(0,)`` for a cluster-mode
    node); ``prefix`` is put in front of every key name; ``functions=False`` skips FUNCTION LOAD.
    """
    if scale < 0:
        raise ValueError("scale must be >= 0")
    rng = random.Random(SEED)
    clients: dict[int, redis.Redis] = {}

    def client(db: int) -> redis.Redis:
        if db not in clients:
            clients[db] = client_factory(db)
        return clients[db]

    try:
        if 0 in databases:
            _db0(client(0), engine, rng, scale, prefix)
        if 1 in databases:
            _db1(client(1), engine, rng, scale, prefix)
        if 5 in databases:
            _db5(client(5), engine, rng, prefix)
        if functions and engine.supports_functions:
            first = client(databases[0] if databases else 0)
            for code in FUNCTION_LIBRARIES.values():
                first.execute_command("FUNCTION", "LOAD", "REPLACE", code)
    finally:
        for c in clients.values():
            c.close()


def _expire_at(offset: int) -> int:
    return EXPIRE_BASE_MS + offset * 1000 + offset % 997


def _word(rng: random.Random, lo: int = 3, hi: int = 12) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(lo, hi)))


def _simple_keys(p: redis.client.Pipeline, rng: random.Random, count: int, prefix: str,
                 ttl_offset: int) -> None:
    for i in range(count):
        key = f"{prefix}simple:{i:05d}"
        kind = i % 5
        if kind == 0:
            value: str | bytes = str(rng.randint(-10**6, 10**6))
        elif kind == 1:
            value = str(rng.randint(-2**63, 2**63 - 1))
        elif kind == 2:
            value = _word(rng)
        elif kind == 3:
            value = " ".join(_word(rng) for _ in range(rng.randint(2, 12)))
        else:
            value = rng.randbytes(rng.randint(1, 40))
        p.set(key, value)
        if i % 7 == 3:
            p.pexpireat(key, _expire_at(ttl_offset + i))


def _compressed_list(c: redis.Redis, key: str, elements: list[str]) -> None:
    """Build ``key`` with list-compress-depth 1 so its middle quicklist nodes are LZF-compressed."""
    try:
        cfg = {_decode_id(k): v for k, v in c.config_get("list-compress-depth").items()}
        old = cfg.get("list-compress-depth", b"0")
        c.config_set("list-compress-depth", 1)
    except redis.ResponseError:
        old = None  # CONFIG disabled/renamed: build an ordinary list
    try:
        c.delete(key)
        for i in range(0, len(elements), 500):
            c.rpush(key, *elements[i:i + 500])
    finally:
        if old is not None:
            c.config_set("list-compress-depth", old.decode() if isinstance(old, bytes) else old)


def _db0(c: redis.Redis, engine: Engine, rng: random.Random, scale: int, pfx: str) -> None:
    p = c.pipeline(transaction=False)
    # ---------------------------------------------------------------- strings
    p.set(f"{pfx}string:short", "hello world")
    p.set(f"{pfx}string:int:12345", "12345")
    p.set(f"{pfx}string:int:-7", "-7")
    for n in (0, 12, 127, -128, 128, 32767, -32768, 32768, 2147483647, -2147483648,
              4294967296, 9223372036854775807, -9223372036854775808):
        p.set(f"{pfx}string:int:{n}", str(n))
    p.set(f"{pfx}string:notint:007", "007")
    p.set(f"{pfx}string:notint:1.5", "1.5")
    p.set(f"{pfx}string:notint:+1", "+1")
    p.set(f"{pfx}string:lzf", "a" * 200)
    p.set(f"{pfx}string:lzf:text", ("The quick brown fox jumps over the lazy dog. " * 60).encode())
    p.set(f"{pfx}string:lzf:large", b"snaptool-" * 8000)
    p.set(f"{pfx}string:random", rng.randbytes(3000))
    p.set(f"{pfx}string:binary", b"\x00\xff\x00\xfe binary \xff\x00" + bytes(range(256)))
    p.set(f"{pfx}string:empty", b"")
    p.set(f"{pfx}string:utf8", "naïve café ✓ 日本語 🚀".encode())
    p.set(f"{pfx}string:newline", "line1\nline2\r\n\ttab")
    p.set(pfx.encode() + b"bin:\x00\xff\xfe key", b"value of a binary key")
    p.set(pfx.encode() + b"\xff\xfe\x00\x01", b"\x00")
    p.set(f"{pfx}ключ:ü:日本", "unicode key")
    p.set(f"{pfx}key with spaces", "spaces")
    p.set(f"{pfx}{{tag}}:a", "hash-tagged a")
    p.set(f"{pfx}{{tag}}:b", "hash-tagged b")
    # ---------------------------------------------------------------- lists
    lists = {
        "list:small": ["a", "b", "1", "-2", "3.14", ""],
        "list:ints": [str(n) for n in (0, 7, 12, 13, -1, 127, -128, 200, 32767, -32768, 40000,
                                        8388607, -8388608, 8388608, 2147483647, -2147483648,
                                        2147483648, 9223372036854775807, -9223372036854775808)],
        "list:large": [f"item-{i:04d}-{_word(rng, 4, 16)}" for i in range(1000)],
        "list:bigelem": ["head", "x" * 10 * 1024, "tail"] + [str(i) for i in range(150)],
        "list:binary": [b"\x00", b"\xff\xfe", b"", rng.randbytes(30)],
    }
    for name, elements in lists.items():
        p.delete(f"{pfx}{name}")
        p.rpush(f"{pfx}{name}", *elements)
    # ---------------------------------------------------------------- sets
    sets: dict[str, list[Any]] = {
        "set:intset16": [1, 2, 3, -5, 100, 32767, -32768],
        "set:intset32": [70000, -70000, 1, 2147483647, -2147483648],
        "set:intset64": [2**40, -(2**40), 5, 9223372036854775807, -9223372036854775808],
        "set:small:strings": ["apple", "banana", "cherry", "1"],
        "set:binary": [b"\x00", b"\xff", b"plain"],
        "set:long-member": ["short", "m" * 100],
        "set:large:strings": [f"member-{i:04d}-{_word(rng, 2, 8)}" for i in range(600)],
        "set:large:ints": sorted({rng.randint(-10**9, 10**9) for _ in range(600)}),
    }
    for name, members in sets.items():
        p.delete(f"{pfx}{name}")
        p.sadd(f"{pfx}{name}", *members)
    # ---------------------------------------------------------------- zsets
    inf = float("inf")
    zsets: dict[str, dict[Any, float]] = {
        "zset:small": {"a": 1, "b": 2, "c": 2.5, "d": -3, "e": 0.1},
        "zset:special": {"pinf": inf, "ninf": -inf, "neg": -1.5, "zero": 0, "tenth": 0.1,
                         "big": 1e8, "tiny": 1e-7, "three": 3.0, "huge": 1.7976931348623157e308},
        "zset:long-member": {"short": 1, "m" * 100: 2},
        "zset:large": {f"player-{i:04d}": round(rng.uniform(-1000, 1000), rng.randint(0, 6))
                       for i in range(200)},
    }
    zsets["zset:large"].update({"pinf": inf, "ninf": -inf, "tenth": 0.1, "big": 1e8, "tiny": 1e-7,
                                "neg": -42.0})
    for name, mapping in zsets.items():
        p.delete(f"{pfx}{name}")
        p.zadd(f"{pfx}{name}", mapping)
    # ---------------------------------------------------------------- hashes
    hashes: dict[str, dict[Any, Any]] = {
        "hash:small": {"f1": "v1", "num": "12345", "neg": "-7", "empty": "", "big": "4294967296"},
        "hash:binary": {b"\x00field": b"\xff\x00", b"\xfe": b"", "text": "x"},
        "hash:long-value": {"short": "s", "long": "L" * 100},
        "hash:large": {f"field-{i:04d}": (str(i) if i % 3 == 0 else _word(rng, 1, 20))
                       for i in range(600)},
    }
    for name, mapping in hashes.items():
        p.delete(f"{pfx}{name}")
        p.hset(f"{pfx}{name}", mapping=mapping)
    # ---------------------------------------------------------------- TTLs
    ttl_keys = {
        "ttl:string": lambda k: p.set(k, "expires in 2035"),
        "ttl:list": lambda k: p.rpush(k, "a", "b"),
        "ttl:set": lambda k: p.sadd(k, "a", "b"),
        "ttl:intset": lambda k: p.sadd(k, 1, 2, 3),
        "ttl:zset": lambda k: p.zadd(k, {"a": 1, "b": 2}),
        "ttl:hash": lambda k: p.hset(k, mapping={"a": "1"}),
        "ttl:stream": lambda k: p.xadd(k, {"f": "v"}, id=f"{STREAM_BASE_MS}-1"),
    }
    for i, (name, make) in enumerate(ttl_keys.items()):
        key = f"{pfx}{name}"
        p.delete(key)
        make(key)
        p.pexpireat(key, _expire_at(i + 1))
    _simple_keys(p, rng, 150 * scale, pfx, 100)
    p.execute()
    # ---------------------------------------------------------------- lists needing CONFIG
    _compressed_list(c, f"{pfx}list:compressed",
                     [f"compressible element number {i:05d} " + "z" * 20 for i in range(2000)])
    _plain_list(c, engine, f"{pfx}list:plain", rng)
    _streams(c, engine, rng, pfx)


def _plain_list(c: redis.Redis, engine: Engine, key: str, rng: random.Random) -> None:
    """A list with PLAIN quicklist nodes (Redis 7.0+ / Valkey, needs the DEBUG command).

    Elements above the quicklist "packed threshold" (1 GB by default) get a node of their own that
    is not a listpack; DEBUG QUICKLIST-PACKED-THRESHOLD lowers it while the list is built. Where
    DEBUG is unavailable the same elements end up in ordinary listpack/ziplist nodes.
    """
    # > 8 KB in total, so Redis 7.2+ / Valkey convert the listpack to a quicklist before the push
    elements = [b"small-1", rng.randbytes(2000), b"small-2", b"p" * 3000, b"small-3", b"q" * 4500, b"small-4"]
    lowered = False
    if engine.flavour == "valkey" or engine.version >= (7, 0):
        try:
            c.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000")
            lowered = True
        except redis.ResponseError:
            pass
    try:
        c.delete(key)
        c.rpush(key, *elements)
    finally:
        if lowered:
            c.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", str(1 << 30))


def _streams(c: redis.Redis, engine: Engine, rng: random.Random, pfx: str) -> None:
    main, trimmed = f"{pfx}stream:main", f"{pfx}stream:trimmed"
    empty, gone = f"{pfx}stream:empty-group", f"{pfx}stream:all-deleted"
    c.delete(main, trimmed, empty, gone)
    p = c.pipeline(transaction=False)
    for i in range(250):
        sid = f"{STREAM_BASE_MS + i * 10}-{i % 3}"
        if i % 4 == 3:
            fields = {"event": rng.choice(["door", "window", "alarm"]), "state": rng.choice(["open", "closed"]),
                      "who": _word(rng)}
        else:
            fields = {"sensor": f"s{i % 5}", "temp": f"{rng.uniform(15, 30):.1f}"}
        p.xadd(main, fields, id=sid)
    p.execute()
    c.xdel(main, f"{STREAM_BASE_MS + 30}-0", f"{STREAM_BASE_MS + 100}-1", f"{STREAM_BASE_MS + 1000}-1")
    c.xgroup_create(main, "g1", id="0")
    c.xreadgroup("g1", "alice", {main: ">"}, count=3)
    c.xreadgroup("g1", "bob", {main: ">"}, count=2)
    c.xack(main, "g1", f"{STREAM_BASE_MS + 10}-1")
    if _supports(engine, (6, 2)):
        c.execute_command("XGROUP", "CREATECONSUMER", main, "g1", "dave")
    c.xgroup_create(main, "g2", id=f"{STREAM_BASE_MS + 500}-2")
    c.xreadgroup("g2", "carol", {main: ">"}, count=1)
    # XTRIM (exact MAXLEN)
    for i in range(50):
        c.xadd(trimmed, {"n": str(i)}, id=f"{STREAM_BASE_MS}-{i + 1}")
    c.xtrim(trimmed, maxlen=20, approximate=False)
    # empty stream with a group (MKSTREAM, Redis >= 5.0)
    if _supports(engine, (5, 0)):
        c.xgroup_create(empty, "waiting", id="$", mkstream=True)
    # a stream that had entries; all deleted (length 0, last id kept)
    c.xadd(gone, {"a": "1"}, id=f"{STREAM_BASE_MS}-5")
    c.xadd(gone, {"b": "2"}, id=f"{STREAM_BASE_MS}-6")
    c.xdel(gone, f"{STREAM_BASE_MS}-5", f"{STREAM_BASE_MS}-6")


def _db1(c: redis.Redis, engine: Engine, rng: random.Random, scale: int, pfx: str) -> None:
    p = c.pipeline(transaction=False)
    p.set(f"{pfx}string:short", "hello from db 1")  # same name as in db 0
    p.set(f"{pfx}db1:string", "db1")
    p.delete(f"{pfx}db1:list", f"{pfx}db1:hash", f"{pfx}db1:zset", f"{pfx}db1:ttl")
    p.rpush(f"{pfx}db1:list", *[str(i) for i in range(20)])
    p.hset(f"{pfx}db1:hash", mapping={"a": "1", "b": "two"})
    p.zadd(f"{pfx}db1:zset", {"x": 1.5, "y": -2})
    p.set(f"{pfx}db1:ttl", "expires")
    p.pexpireat(f"{pfx}db1:ttl", _expire_at(50))
    _simple_keys(p, rng, 10 * scale, f"{pfx}db1:", 1000)
    p.execute()


def _db5(c: redis.Redis, engine: Engine, rng: random.Random, pfx: str) -> None:
    p = c.pipeline(transaction=False)
    p.set(f"{pfx}db5:string", "db5")
    p.delete(f"{pfx}db5:set", f"{pfx}db5:intset", f"{pfx}db5:stream")
    p.sadd(f"{pfx}db5:set", "x", "y", "z")
    p.sadd(f"{pfx}db5:intset", 10, 20, 30)
    p.xadd(f"{pfx}db5:stream", {"k": "v"}, id=f"{STREAM_BASE_MS}-0")
    p.xadd(f"{pfx}db5:stream", {"k": "w"}, id=f"{STREAM_BASE_MS}-1")
    p.execute()
    # a group on a stream without deletions: entries_read stays known (7.0+ keeps it in the RDB)
    c.xgroup_create(f"{pfx}db5:stream", "readers", id="0")
    c.xreadgroup("readers", "erin", {f"{pfx}db5:stream": ">"}, count=1)


# ====================================================================== reading back

def json_string(data: bytes | str) -> str | dict[str, str]:
    """Bytes as a JSON string when they are UTF-8, else ``{"base64": ...}``."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def json_text(value: Any) -> str:
    """The canonical JSON text used for sorting and for fixture lines."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def json_score(score: float) -> float | str:
    """A zset score as JSON: a number, or "inf" / "-inf"."""
    if math.isinf(score):
        return "inf" if score > 0 else "-inf"
    return float(score)


def _decode_id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stream_value(c: redis.Redis, key: bytes) -> dict[str, Any]:
    entries = [[_decode_id(sid), [[json_string(f), json_string(v)] for f, v in fields.items()]]
               for sid, fields in c.xrange(key, "-", "+")]
    info = c.xinfo_stream(key)
    out: dict[str, Any] = {"entries": entries, "last_id": _decode_id(info["last-generated-id"]),
                           "length": int(info["length"])}
    for name in ("entries-added", "max-deleted-entry-id", "recorded-first-entry-id"):
        if name in info:
            value = info[name]
            out[name.replace("-", "_")] = int(value) if name == "entries-added" else _decode_id(value)
    groups = []
    for g in sorted(c.xinfo_groups(key), key=lambda g: g["name"]):
        gname = g["name"]
        group: dict[str, Any] = {"name": json_string(gname),
                                 "last_delivered_id": _decode_id(g["last-delivered-id"]),
                                 "pending": int(g["pending"])}
        if "entries-read" in g:
            group["entries_read"] = None if g["entries-read"] is None else int(g["entries-read"])
        consumers = c.xinfo_consumers(key, gname)
        group["consumers"] = sorted(({"name": json_string(x["name"]), "pending": int(x["pending"])}
                                     for x in consumers), key=json_text)
        pel = c.xpending_range(key, gname, min="-", max="+", count=max(1, int(g["pending"]))) \
            if int(g["pending"]) else []
        group["pel"] = [[_decode_id(x["message_id"]), json_string(x["consumer"]), int(x["times_delivered"])]
                        for x in pel]
        groups.append(group)
    out["groups"] = groups
    return out


def key_value(c: redis.Redis, key: bytes, kind: str) -> Any:
    """The value of one key in the fixture JSON shape (see :func:`keyspace_records`)."""
    if kind == "string":
        return json_string(c.get(key) or b"")
    if kind == "list":
        return [json_string(x) for x in c.lrange(key, 0, -1)]
    if kind == "set":
        return sorted((json_string(x) for x in c.smembers(key)), key=json_text)
    if kind == "zset":
        return [[json_string(m), json_score(s)] for m, s in c.zrange(key, 0, -1, withscores=True)]
    if kind == "hash":
        return sorted(([json_string(f), json_string(v)] for f, v in c.hgetall(key).items()), key=json_text)
    if kind == "stream":
        return _stream_value(c, key)
    raise ValueError(f"unsupported type {kind!r} for key {key!r}")


def _expire_ms(c: redis.Redis, key: bytes, engine: Engine) -> int | None:
    if engine.supports_pexpiretime:
        at = int(c.execute_command("PEXPIRETIME", key))
        return at if at >= 0 else None
    before = time.time()
    ttl = int(c.pttl(key))
    after = time.time()
    if ttl < 0:
        return None
    return int(round((before + after) * 500)) + ttl  # midpoint; see keyspace_records


def keyspace_records(client_factory: ClientFactory, engine: Engine, *,
                     databases: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Every key as ``{"db", "key", "type", "expire_ms", "value"}``, sorted by db then key text.

    * key / strings: a JSON string if the bytes are UTF-8, else ``{"base64": "..."}``;
    * string → S; list → [S]; set → [S] sorted by canonical JSON text; zset → [[S, score]] in
      engine (ascending) order, score a number or "inf"/"-inf"; hash → [[field, value]] sorted by
      canonical JSON text;
    * stream → ``{"entries": [[id, [[f, v], ...]], ...], "last_id", "length", "groups": [{"name",
      "last_delivered_id", "pending", "consumers": [{"name", "pending"}], "pel": [[id, consumer,
      delivery_count]]}]}`` plus, when the engine reports them, ``entries_added``,
      ``max_deleted_entry_id``, ``recorded_first_entry_id`` and per group ``entries_read``
      (idle and delivery times are left out: they are not reproducible);
    * expire_ms: absolute unix ms from PEXPIRETIME (Redis >= 7.0, Valkey); older engines compute
      now + PTTL, exact to within a few milliseconds (compare with a tolerance of 1000 ms).
    """
    c0 = client_factory(0)
    try:
        if databases is None:
            keyspace = c0.info("keyspace")
            databases = sorted(int(name[2:]) for name in keyspace if str(name).startswith("db"))
    finally:
        c0.close()
    records: list[dict[str, Any]] = []
    for db in databases:
        c = client_factory(db)
        try:
            keys = sorted(set(c.scan_iter(count=1000)), key=lambda k: json_text(json_string(k)))
            for key in keys:
                kind = c.type(key)
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind == "none":
                    continue
                records.append({"db": db, "key": json_string(key), "type": kind,
                                "expire_ms": _expire_ms(c, key, engine), "value": key_value(c, key, kind)})
        finally:
            c.close()
    return records


def function_libraries(client: redis.Redis) -> list[dict[str, Any]]:
    """FUNCTION LIST WITHCODE as ``[{"name", "engine", "code", "functions": [names]}]`` sorted by name."""
    raw = client.execute_command("FUNCTION", "LIST", "WITHCODE")
    out = []
    for lib in raw:
        d = _pairs(lib)
        funcs = sorted(_decode_id(_pairs(f)["name"]) for f in d.get("functions", []))
        out.append({"name": _decode_id(d["library_name"]), "engine": _decode_id(d["engine"]),
                    "code": _decode_id(d["library_code"]), "functions": funcs})
    return sorted(out, key=lambda x: x["name"])


def _pairs(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {_decode_id(k): v for k, v in item.items()}
    return {_decode_id(item[i]): item[i + 1] for i in range(0, len(item), 2)}


__all__ = ["DEFAULT_DATABASES", "EXPIRE_BASE_MS", "FUNCTION_LIBRARIES", "SEED", "function_libraries",
           "json_score", "json_string", "json_text", "key_value", "keyspace_records", "populate"]
