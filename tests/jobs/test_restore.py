"""Restores of live backups into nodes, clusters of another shard count and files, always validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from snaptool.engines.cluster import LocalCluster
from snaptool.engines.sample import populate
from snaptool.errors import EngineError, LossyConversionError, SnaptoolError, ValidationError
from snaptool.jobs.backup import backup
from snaptool.jobs.restore import RestoreOptions, restore
from snaptool.rdb.slots import SlotLayout
from snaptool.storage.repository import Repository


def _digest(client) -> str:
    return client.execute_command("DEBUG", "DIGEST").decode()


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.open(str(tmp_path / "repo"))


def test_node_backup_restores_into_a_node_of_each_engine(each_engine, get_engine, engine_server, repo,
                                                         tmp_path: Path) -> None:
    source = engine_server(each_engine)
    populate(source.client, each_engine)
    manifest = backup(source.url, repo)
    for name in ("redis-6.2", "redis-7.0", "valkey-8.1"):
        engine = get_engine(name)
        target = engine_server(engine)
        lossy = engine.version < (7,) and each_engine.supports_functions  # the sample holds functions
        if lossy:
            with pytest.raises(LossyConversionError, match="function libraries"):
                restore(manifest.id, repo, RestoreOptions(to=target.url))
            assert target.client().dbsize() == 0  # refused before any key was written
        report = restore(manifest.id, repo, RestoreOptions(to=target.url, allow_lossy=lossy))
        assert report.validation.ok and report.validation.checked == report.restored > 0
        assert report.restored + report.expired_skipped == manifest.keys
        if engine is each_engine:
            assert _digest(target.client()) == _digest(source.client())
    out = restore(manifest.id, repo, RestoreOptions(to_dir=str(tmp_path / "files")))
    assert out.validation.ok and Path(out.files[0]).name == "dump.rdb"


def test_cluster_backup_restores_into_other_shapes(each_engine, engine_server, repo, tmp_path: Path) -> None:
    engine = each_engine
    with LocalCluster(engine, SlotLayout.even(3), [None] * 3) as cluster:
        client = cluster.client()
        for i in range(2000):
            client.hset(f"user:{{{i % 97}}}:{i}", mapping={"n": i, "name": f"u{i}"})
            client.set(f"s:{i}", "x" * (i % 50), ex=3600 if i % 7 == 0 else None)
        manifest = backup(cluster.url, repo)
    assert len(manifest.files) == 3 and manifest.keys == 4000
    with LocalCluster(engine, SlotLayout.even(2), [None] * 2) as two:  # a live cluster of another size
        report = restore(manifest.id, repo, RestoreOptions(to=two.url))
        assert report.restored == 4000 and report.validation.ok
        assert sum(n.client().dbsize() for n in two.nodes) == 4000
    node = engine_server(engine)  # a standalone node takes every shard
    assert restore("latest", repo, RestoreOptions(to=node.url)).validation.ok
    files = restore("latest", repo, RestoreOptions(to_dir=str(tmp_path / "five"), layout=SlotLayout.even(5)))
    assert len(files.files) == 5 and files.validation.ok
    same = restore("latest", repo, RestoreOptions(to_dir=str(tmp_path / "three")))
    assert [Path(f).name for f in same.files] == ["shard-0001.rdb", "shard-0002.rdb", "shard-0003.rdb"]
    assert (tmp_path / "three" / "layout.json").exists() and same.validation.ok


def test_a_multi_db_snapshot_is_refused_by_a_cluster_before_any_write(get_engine, engine_server, repo) -> None:
    engine = get_engine("redis-7.0")
    source = engine_server(engine)
    populate(source.client, engine)  # databases 0, 1 and 5
    backup(source.url, repo)
    with LocalCluster(engine, SlotLayout.even(2), [None] * 2) as cluster:
        with pytest.raises(SnaptoolError, match=r"database\(s\) 1, 5; nothing was changed"):
            restore("latest", repo, RestoreOptions(to=cluster.url))
        assert sum(n.client().dbsize() for n in cluster.nodes) == 0


def test_a_node_snapshot_restores_into_a_cluster(each_engine, engine_server, repo) -> None:
    source = engine_server(each_engine)
    client = source.client()
    client.execute_command("DEBUG", "POPULATE", 3000, "str", 20)
    for i in range(300):
        client.rpush(f"list:{i}", *range(i % 7 + 1))
        client.zadd(f"zset:{i}", {f"m{j}": j / 3 for j in range(i % 5 + 1)})
        client.pexpire(f"list:{i}", 10_000_000)
    manifest = backup(source.url, repo)
    with LocalCluster(each_engine, SlotLayout.even(3), [None] * 3) as cluster:
        report = restore(manifest.id, repo, RestoreOptions(to=cluster.url))
        assert report.restored == 3600 and report.validation.ok


def test_a_non_empty_target_is_refused_and_left_alone(get_engine, engine_server, repo) -> None:
    engine = get_engine("redis-7.0")
    source = engine_server(engine)
    populate(source.client, engine)
    backup(source.url, repo)
    target = engine_server(engine)
    target.client().set("string:short", "mine")
    before = _digest(target.client())
    with pytest.raises(SnaptoolError, match="not empty.*nothing was changed"):
        restore("latest", repo, RestoreOptions(to=target.url))
    assert _digest(target.client()) == before
    report = restore("latest", repo, RestoreOptions(to=target.url, replace=True))
    assert report.validation.ok and target.client().get("string:short") != b"mine"
    flushed = engine_server(engine)
    flushed.client().set("only-here", "1")
    assert restore("latest", repo, RestoreOptions(to=flushed.url, flush=True)).validation.ok
    assert not flushed.client().exists("only-here")


def test_validation_fails_when_the_target_differs(get_engine, engine_server, repo) -> None:
    """Someone writes to the target while it is being restored: the comparison says so (exit 4)."""
    engine = get_engine("redis-7.0")
    source = engine_server(engine)
    source.client().execute_command("DEBUG", "POPULATE", 20000, "k", 10)
    backup(source.url, repo)
    target = engine_server(engine)

    def intrude(offset: int, keys: int) -> None:
        target.client().set("intruder", "1")

    with pytest.raises(ValidationError) as info:
        restore("latest", repo, RestoreOptions(to=target.url), progress=intrude)
    assert info.value.report.extra == 1 and info.value.report.equal == 20000


def test_a_target_that_dies_then_a_rerun_with_replace(get_engine, engine_server, repo) -> None:
    engine = get_engine("redis-7.0")
    source = engine_server(engine)
    source.client().execute_command("DEBUG", "POPULATE", 200000, "key", 100)
    backup(source.url, repo)
    target = engine_server(engine, config={"appendonly": "yes", "appendfsync": "always"})

    def kill_midway(offset: int, keys: int) -> None:
        if keys > 50000 and target.running:
            target.process.kill()

    with pytest.raises(EngineError) as info:
        restore("latest", repo, RestoreOptions(to=target.url), progress=kill_midway)
    assert f"127.0.0.1:{target.port}" in str(info.value)
    target.start()  # the same data directory: the node comes back with part of the keys
    partial = target.client().dbsize()
    assert 0 < partial < 200000
    with pytest.raises(SnaptoolError, match="not empty"):
        restore("latest", repo, RestoreOptions(to=target.url))
    report = restore("latest", repo, RestoreOptions(to=target.url, replace=True))
    assert report.restored == 200000 and report.validation.ok
