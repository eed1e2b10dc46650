from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from snaptool.engines import server as server_mod
from snaptool.engines.sample import EXPIRE_BASE_MS, keyspace_records, populate
from snaptool.engines.server import EngineServer, EngineStartError, live_servers
from snaptool.errors import EngineError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


def crc64(data: bytes) -> int:
    """CRC-64/Jones as Redis computes it (reflected, init 0, no final xor)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc


def minimal_rdb(version: int, magic: str = "REDIS0") -> bytes:
    """An empty RDB file: header, EOF opcode, CRC-64 trailer (18 bytes)."""
    body = (magic.encode() + f"{version:0{9 - len(magic)}d}".encode()) + b"\xff"
    return body + crc64(body).to_bytes(8, "little")


def test_minimal_rdb_matches_the_documented_bytes():
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert minimal_rdb(10) == b"REDIS0010\xff" + bytes.fromhex("a9fd37fe89a77eeb")
    assert minimal_rdb(11, "VALKEY") == b"VALKEY011\xff" + crc64(b"VALKEY011\xff").to_bytes(8, "little")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); check its state
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Whether a new server could listen there (SO_REUSEADDR, as every server sets: the closed
    connections of the old one may still sit in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------- lifecycle

def test_start_stop_frees_everything(each_engine):
    srv = EngineServer(each_engine)
    srv.start()
    try:
        pid, port, directory = srv.pid, srv.port, srv.dir
        assert srv.running and pid in live_servers()
        assert srv.url == f"redis://127.0.0.1:{port}"
        c = srv.client()
        assert c.ping()
        c.set(b"k\x00", b"v\xff")
        assert c.get(b"k\x00") == b"v\xff"
        assert srv.client(decode_responses=True).get("missing") is None
        info = c.info("server")
        assert info["tcp_port"] == port
        c.close()
    finally:
        srv.stop()
    assert not srv.running and srv.pid is None
    assert not pid_alive(pid)
    assert pid not in live_servers()
    assert port_free(port)
    assert not directory.exists()
    srv.stop()  # idempotent
    with pytest.raises(EngineError):
        srv.client()


def test_context_manager_and_save(each_engine):
    with EngineServer(each_engine) as srv:
        srv.client().set("a", "1")
        rdb = srv.save()
        assert rdb == srv.dir / "dump.rdb"
        data = rdb.read_bytes()
        assert data[:9] == f"REDIS{each_engine.max_rdb_version:04d}".encode()
        pid = srv.pid
    assert not pid_alive(pid)
    assert not rdb.exists()


def test_command_line(each_engine, tmp_path):
    srv = EngineServer(each_engine, dir=tmp_path, dbfilename="x.rdb", config={"databases": "32"})
    args = srv.command_line(12345)
    assert args[0] == each_engine.binary
    joined = " ".join(args)
    for part in ("--port 12345", "--bind 127.0.0.1", "--appendonly no", f"--dir {tmp_path}",
                 "--dbfilename x.rdb", "--daemonize no", f"--logfile {tmp_path / 'engine.log'}",
                 "--databases 32"):
        assert part in joined
    assert args[args.index("--save") + 1] == ""
    assert ("--enable-debug-command" in args) is each_engine.supports_enable_debug_command


def test_debug_command_available(each_engine, engine_server):
    srv = engine_server(each_engine)
    digest = srv.client().execute_command("DEBUG", "DIGEST")
    assert digest == b"0" * 40


def test_extra_config_is_applied(each_engine, engine_server):
    srv = engine_server(each_engine, config={"maxmemory-policy": "allkeys-lfu", "databases": "32"})
    c = srv.client(decode_responses=True)
    assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lfu"}
    assert c.config_get("databases") == {"databases": "32"}
    assert srv.client(db=31).ping()


def test_user_dir_is_kept(each_engine, tmp_path):
    data_dir = tmp_path / "data"
    with EngineServer(each_engine, dir=data_dir, dbfilename="snap.rdb") as srv:
        srv.client().set("x", "y")
        assert srv.save() == data_dir / "snap.rdb"
    assert (data_dir / "snap.rdb").exists()
    assert (data_dir / "engine.log").exists()


def test_bad_config_gives_engine_error_with_log(each_engine, engine_server):
    with pytest.raises(EngineStartError) as info:
        engine_server(each_engine, config={"no-such-directive": "1"})
    err = info.value
    assert isinstance(err, EngineError)
    assert "no-such-directive" in str(err) or "Bad directive" in str(err)
    assert err.log_tail
    assert live_servers() == []


def test_port_race_is_retried(get_engine, monkeypatch):
    engine = get_engine("redis")
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    real_free_port = server_mod.free_port
    handed_out = []

    def racy_free_port(host="127.0.0.1", *, cluster=False):
        port = taken if not handed_out else real_free_port(host, cluster=cluster)
        handed_out.append(port)
        return port

    monkeypatch.setattr(server_mod, "free_port", racy_free_port)
    try:
        with EngineServer(engine) as srv:
            assert srv.port != taken and srv.client().ping()
        assert handed_out[0] == taken and len(handed_out) == 2
    finally:
        blocker.close()


def test_cluster_mode(get_engine, engine_server):
    engine = get_engine("redis")
    srv = engine_server(engine, cluster=True)
    c = srv.client(decode_responses=True)
    assert "cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
    c.set("{user1}:a", "1")
    assert c.get("{user1}:a") == "1"
    assert srv.port <= 55535


# ---------------------------------------------------------------------------- loading RDB files

def test_refused_rdb_version_is_reported(get_engine, tmp_path):
    """The documented 18-byte v10 file: Redis 6.2 refuses it, Redis 7.0 loads it."""
    rdb = tmp_path / "v10.rdb"
    rdb.write_bytes(b"REDIS0010\xff" + bytes.fromhex("a9fd37fe89a77eeb"))
    old = EngineServer(get_engine("redis-6.2"))
    try:
        with pytest.raises(EngineError) as info:
            old.load(rdb)
        assert "Can't handle RDB format version 10" in str(info.value)
        assert "\n" not in str(info.value)
        assert not old.running
    finally:
        old.stop()
    assert not live_servers()
    with EngineServer(get_engine("redis-7.0"), rdb=rdb) as new:
        assert new.client().dbsize() == 0


@pytest.mark.parametrize("magic,version", [("REDIS0", 9), ("REDIS0", 10), ("REDIS0", 11), ("REDIS0", 12),
                                           ("VALKEY", 11), ("VALKEY", 80)])
def test_minimal_files_load_where_discovery_says(each_engine, tmp_path, magic, version):
    rdb = tmp_path / "min.rdb"
    rdb.write_bytes(minimal_rdb(version, magic))
    flavour = "valkey" if magic == "VALKEY" else "redis"
    srv = EngineServer(each_engine)
    try:
        if each_engine.can_load(version, flavour):
            srv.load(rdb)
            assert srv.client().dbsize() == 0
        else:
            with pytest.raises(EngineStartError) as info:
                srv.load(rdb)
            assert info.value.returncode not in (None, 0)
            if magic == "REDIS0":
                assert f"Can't handle RDB format version {version}" in str(info.value)
    finally:
        srv.stop()


def test_load_replaces_data_and_round_trips(each_engine, engine_server, tmp_path):
    src = engine_server(each_engine)
    c = src.client()
    c.set("kept", "yes")
    c.rpush("list", *range(300))
    c.pexpireat("kept", EXPIRE_BASE_MS)
    copy = tmp_path / "copy.rdb"
    copy.write_bytes(src.save().read_bytes())

    dst = engine_server(each_engine)
    dst.client().set("will-vanish", "1")
    old_pid = dst.pid
    assert dst.load(copy) is dst
    assert dst.pid != old_pid and not pid_alive(old_pid)
    d = dst.client()
    assert d.get("will-vanish") is None
    assert d.get("kept") == b"yes" and d.llen("list") == 300
    assert d.pttl("kept") > 0
    # loading its own current file also works
    dst.load(dst.save())
    assert dst.client().dbsize() == 2


def test_missing_rdb_file(each_engine, tmp_path):
    srv = EngineServer(each_engine)
    with pytest.raises(EngineError, match="does not exist"):
        srv.load(tmp_path / "nope.rdb")
    with pytest.raises(EngineError, match="does not exist"):
        EngineServer(each_engine, rdb=tmp_path / "nope.rdb").start()


# ---------------------------------------------------------------------------- no leftovers

_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from snaptool.engines.discovery import find_engine
    from snaptool.engines.server import EngineServer
    srv = EngineServer(find_engine({spec!r})).start()
    print(srv.pid, srv.port, srv.dir, flush=True)
    if {hard!r}:
        os._exit(0)          # no atexit: the parent-death signal must stop the engine
    # a normal exit without stop(): the atexit hook must stop it and remove the dir
""")


@pytest.mark.parametrize("hard", [False, True], ids=["atexit", "os._exit"])
def test_no_process_left_when_the_parent_exits(each_engine, hard):
    code = _CHILD.format(root=str(ROOT), spec=each_engine.binary, hard=hard)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid, port, directory = out.stdout.split()
    deadline = time.monotonic() + 10
    while pid_alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(int(pid))
    if not hard:
        assert not Path(directory).exists()
    else:
        import shutil
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------- sample data

def test_sample_populate_covers_the_encodings(each_engine, engine_server):
    srv = engine_server(each_engine)
    populate(srv.client, each_engine)
    c = srv.client()
    assert c.dbsize() >= 150
    assert srv.client(1).dbsize() > 0 and srv.client(5).dbsize() > 0
    enc = {}
    for key in c.scan_iter(count=1000):
        enc.setdefault((c.type(key).decode(), c.object("encoding", key).decode()), []).append(key)
    kinds = {k for k, _ in enc}
    assert kinds == {"string", "list", "set", "zset", "hash", "stream"}
    small = "ziplist" if each_engine.version < (7, 0) and each_engine.flavour == "redis" else "listpack"
    expected = {("string", "int"), ("string", "embstr"), ("string", "raw"), ("list", "quicklist"),
                ("set", "intset"), ("set", "hashtable"), ("zset", "skiplist"), ("zset", small),
                ("hash", "hashtable"), ("hash", small), ("stream", "stream")}
    if each_engine.flavour == "valkey" or each_engine.version >= (7, 2):
        expected |= {("set", "listpack"), ("list", "listpack")}
    assert expected <= set(enc), expected - set(enc)
    if each_engine.supports_pexpiretime:
        assert c.pexpiretime("ttl:string") == EXPIRE_BASE_MS + 1000 + 1
    else:
        assert c.pttl("ttl:string") > 0
    assert c.xinfo_groups("stream:main")[0]["pending"] == 4
    assert c.xlen("stream:empty-group") == 0
    if each_engine.supports_functions:
        assert c.fcall("snaptool_echo", 0, "hi") == b"hi"
    rdb = srv.save()
    assert rdb.stat().st_size < 300 * 1024


def test_sample_populate_is_deterministic_and_scales(get_engine, engine_server):
    engine = get_engine(None)
    a, b, big = engine_server(engine), engine_server(engine), engine_server(engine)
    populate(a.client, engine)
    populate(b.client, engine)
    populate(b.client, engine)  # idempotent
    populate(big.client, engine, scale=3, databases=(0,))
    assert keyspace_records(a.client, engine) == keyspace_records(b.client, engine)
    assert big.client().dbsize() == a.client().dbsize() + 300
    assert big.client(1).dbsize() == 0


# ---------------------------------------------------------------------------- shipped fixtures

def _fixture_names():
    return sorted(p.stem for p in FIXTURES.glob("*.rdb"))


@pytest.mark.parametrize("name", _fixture_names() or ["(none)"])
def test_fixture_loads_and_matches_its_jsonl(name, get_engine, engine_server):
    if name == "(none)":
        pytest.skip("no fixtures generated (run scripts/make-fixtures)")
    target = "-".join(name.split("-")[:2])
    engine = get_engine(target)
    rdb, jsonl = FIXTURES / f"{name}.rdb", FIXTURES / f"{name}.jsonl"
    assert rdb.stat().st_size < 300 * 1024
    expected = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    srv = engine_server(engine, rdb=rdb)
    actual = keyspace_records(srv.client, engine)
    assert [(r["db"], r["key"]) for r in actual] == [(r["db"], r["key"]) for r in expected]
    for got, want in zip(actual, expected):
        if want["expire_ms"] is None:
            assert got["expire_ms"] is None
        else:
            assert want["expire_ms"] > EXPIRE_BASE_MS - 1000
            assert abs(got["expire_ms"] - want["expire_ms"]) <= (0 if engine.supports_pexpiretime else 1000)
        assert {k: v for k, v in got.items() if k != "expire_ms"} == \
            {k: v for k, v in want.items() if k != "expire_ms"}


def test_reserved_config_keys_are_rejected(get_engine):
    engine = get_engine(None)
    for key in ("port", "dir", "dbfilename", "--logfile"):
        with pytest.raises(ValueError, match="may not set"):
            EngineServer(engine, config={key: "x"})
