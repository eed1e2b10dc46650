"""Files built from Python values load into each engine in the encodings it would choose itself.

Every value is written twice into one live node: loaded from an RDB built by snaptool (db 0), and
through ordinary commands (db 1). The engine must report the same OBJECT ENCODING and the same
DEBUG DIGEST-VALUE for both.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from snaptool.engines.discovery import find_engines
from snaptool.engines.server import EngineServer
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.model import StreamEntry, StreamValue
from snaptool.rdb.targets import parse_target

ENGINES = [e for e in find_engines() if e.target_name in ("redis-6.2", "redis-7.0", "valkey-8.1")]
rng = random.Random(11)

VALUES: dict[bytes, tuple[str, object]] = {
    b"s:int": ("string", b"12345"),
    b"s:neg": ("string", b"-7"),
    b"s:notint": ("string", b"007"),
    b"s:long": ("string", b"a" * 300),
    b"s:bin": ("string", bytes(range(256))),
    b"s:empty": ("string", b""),
    b"l:small": ("list", [b"a", b"1", b"-5", b"x" * 70]),
    b"l:large": ("list", [str(i).encode() * (i % 7 + 1) for i in range(3000)]),
    b"l:bigelem": ("list", [b"a", rng.randbytes(20000), b"b"]),
    b"set:ints": ("set", [str(i).encode() for i in range(0, 400, 3)]),
    b"set:bigints": ("set", [str(i * 1000003).encode() for i in range(600)]),
    b"set:words": ("set", [f"w{i}".encode() for i in range(50)]),
    b"set:many": ("set", [f"member-{i}".encode() for i in range(300)]),
    b"z:small": ("zset", [(b"a", 1.0), (b"b", 2.5), (b"c", -3.0), (b"d", 0.1), (b"e", 1e8), (b"f", float("inf"))]),
    b"z:large": ("zset", [(f"m{i}".encode(), rng.uniform(-1e6, 1e6)) for i in range(300)]),
    b"z:longmember": ("zset", [(b"m" * 100, 1.0), (b"n", 2.0)]),
    b"h:small": ("hash", [(b"f1", b"v1", None), (b"f2", b"22", None)]),
    b"h:large": ("hash", [(f"f{i}".encode(), f"v{i}".encode(), None) for i in range(700)]),
    b"h:longvalue": ("hash", [(b"f", b"v" * 100, None)]),
    b"stream": ("stream", StreamValue(
        entries=[StreamEntry((1000 + i // 3, i % 3), [(b"a", str(i).encode()), (b"b", b"x")] if i % 4 else
                             [(b"other", b"y")]) for i in range(250)],
        length=250, last_id=(2000, 0))),
}
EXPIRES = {b"s:int": 2051222400123, b"l:small": 2051222400456}


def _by_commands(c, key: bytes, kind: str, value) -> None:
    if kind == "string":
        c.set(key, value)
    elif kind == "list":
        c.rpush(key, *value)
    elif kind == "set":
        c.sadd(key, *value)
    elif kind == "zset":
        c.zadd(key, {m: s for m, s in value})
    elif kind == "hash":
        c.hset(key, mapping={f: v for f, v, _ in value})
    elif kind == "stream":
        for entry in value.entries:
            c.xadd(key, dict(entry.fields), id=f"{entry.id[0]}-{entry.id[1]}")
        c.execute_command("XSETID", key, "2000-0")
    if key in EXPIRES:
        c.execute_command("PEXPIREAT", key, EXPIRES[key])


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.target_name)
def test_built_file_matches_what_the_engine_builds(engine, tmp_path: Path) -> None:
    path = tmp_path / "built.rdb"
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target(engine.target_name))
        for key, (kind, value) in VALUES.items():
            builder.add(key, kind, value, expire_ms=EXPIRES.get(key))
        builder.add(b"empty", "list", [])
        builder.finish()
    assert builder.keys == len(VALUES) and builder.empty_skipped == 1
    with EngineServer(engine, config={"databases": "4"}) as server:
        server.load(path)
        loaded, built = server.client(0), server.client(1)
        assert loaded.dbsize() == len(VALUES)
        for key, (kind, value) in VALUES.items():
            _by_commands(built, key, kind, value)
        for key in VALUES:
            assert loaded.object("encoding", key) == built.object("encoding", key), key
            mine = loaded.execute_command("DEBUG", "DIGEST-VALUE", key)
            theirs = built.execute_command("DEBUG", "DIGEST-VALUE", key)
            assert mine == theirs, key
            assert loaded.pttl(key) == -1 if key not in EXPIRES else abs(loaded.pttl(key) - built.pttl(key)) < 1000
