"""snaptool.engines.cluster on live engines: LocalCluster formation and read_layout.

One 3-node cluster per engine (Redis 6.2 without CLUSTER SHARDS / ADDSLOTSRANGE, Redis 7.0,
Valkey 8.1) is built for the module on an uneven layout with several ranges per shard; its nodes
SAVE the files the second cluster is started from.
"""

from __future__ import annotations

import itertools

import pytest
import redis

from snaptool.engines.cluster import LocalCluster, read_layout
from snaptool.engines.server import EngineServer, free_port, live_servers
from snaptool.errors import EngineError, SnaptoolError
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.slots import SlotLayout

ENGINES = ("redis-6.2", "redis-7.0", "valkey-8.1")
LAYOUT = SlotLayout.from_json([
    {"name": "alpha", "slots": [[0, 4000], [12000, 16383]]},
    {"name": "beta", "slots": [[4001, 8000], 11000]},
    {"name": "gamma", "slots": [[8001, 10999], [11001, 11999]]},
])


def keys_for(layout: SlotLayout, shard: int, count: int, prefix: str = "k") -> list[bytes]:
    """``count`` keys whose slots belong to ``shard``."""
    out = []
    for i in itertools.count():
        key = f"{prefix}:{i}".encode()
        if layout.shard_of(key_slot(key)) == shard:
            out.append(key)
            if len(out) == count:
                return out
    raise AssertionError


def slot_owners(client: redis.Redis) -> list[tuple[int, int, str]]:
    """CLUSTER SLOTS as sorted (start, end, node id), adjacent runs of one node merged."""
    out: list[tuple[int, int, str]] = []
    for start, end, primary, *_ in sorted(client.execute_command("CLUSTER", "SLOTS")):
        node_id = primary[2].decode()
        if out and out[-1][2] == node_id and out[-1][1] + 1 == start:
            out[-1] = (out[-1][0], end, node_id)
        else:
            out.append((start, end, node_id))
    return out


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, get_engine):
    return get_engine(request.param)


@pytest.fixture(scope="module")
def cluster(engine):
    with LocalCluster(engine, LAYOUT, [None, None, None]) as built:
        yield built


@pytest.fixture(scope="module")
def shard_files(cluster, tmp_path_factory):
    """Each node's keys (10 per shard and any others) SAVEd by the node itself, and how many."""
    client = cluster.client()
    try:
        for index in range(3):
            for key in keys_for(LAYOUT, index, 10, "saved"):
                client.set(key, key[::-1])
    finally:
        client.close()
    out = tmp_path_factory.mktemp("shards")
    files, sizes = [], []
    for shard, node in zip(LAYOUT.shards, cluster.nodes):
        path = out / f"{shard.name}.rdb"
        path.write_bytes(node.save().read_bytes())
        files.append(path)
        sizes.append(node.client().dbsize())  # other tests of the module may have added keys
    return files, sizes


# ---------------------------------------------------------------------------- LocalCluster

def test_every_node_serves_the_layout(cluster):
    assert len(cluster.nodes) == 3 and cluster.url == cluster.nodes[0].url
    ids = [node.client().execute_command("CLUSTER", "MYID").decode() for node in cluster.nodes]
    expected = sorted((start, end, ids[index]) for index, shard in enumerate(LAYOUT.shards)
                      for start, end in shard.ranges)
    for node in cluster.nodes:
        c = node.client()
        assert b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
        assert slot_owners(c) == expected
        c.close()


def test_cluster_client_reaches_every_shard(cluster):
    client = cluster.client()
    try:
        for index, node in enumerate(cluster.nodes):
            keys = keys_for(LAYOUT, index, 5, f"reach{index}")
            for key in keys:
                client.set(key, b"v" + key)
            assert [client.get(key) for key in keys] == [b"v" + key for key in keys]
            direct = node.client()
            assert [direct.get(key) for key in keys] == [b"v" + key for key in keys]  # on the shard's own node
            direct.close()
    finally:
        client.close()


def test_read_layout_returns_the_same_layout(cluster):
    ids = [node.client().execute_command("CLUSTER", "MYID").decode() for node in cluster.nodes]
    for node in cluster.nodes:
        got = read_layout(node.url)
        assert [s.ranges for s in got.shards] == [s.ranges for s in LAYOUT.shards]
        assert [s.name for s in got.shards] == [i[:8] for i in ids]


def test_nodes_text_and_nodes_conf_parse_like_read_layout(cluster):
    live = read_layout(cluster.url)
    node = cluster.nodes[1]
    c = node.client()
    text = c.execute_command("CLUSTER", "NODES").decode()
    c.execute_command("CLUSTER", "SAVECONFIG")
    c.close()
    assert SlotLayout.from_nodes_text(text) == live
    conf = node.dir / f"nodes-{node.port}.conf"
    assert "vars currentEpoch" in conf.read_text()
    assert SlotLayout.load(conf) == live


def test_read_layout_refuses_migrating_slots(cluster):
    ids = [node.client().execute_command("CLUSTER", "MYID").decode() for node in cluster.nodes]
    source = cluster.nodes[0].client()
    source.execute_command("CLUSTER", "SETSLOT", 100, "MIGRATING", ids[1])
    try:
        for node in cluster.nodes:  # the marker only shows on the migrating node: every primary is asked
            with pytest.raises(SnaptoolError, match="slot 100 is being migrated") as info:
                read_layout(node.url)
            assert "\n" not in str(info.value)
    finally:
        source.execute_command("CLUSTER", "SETSLOT", 100, "STABLE")
        source.close()
    assert read_layout(cluster.url).shards[0].owns(100)


def test_cluster_on_files_saved_by_its_nodes(engine, shard_files):
    """Each node claims the slots of the keys it loads; the rest are added, and all keys stay reachable."""
    files, sizes = shard_files
    with LocalCluster(engine, LAYOUT, files) as again:
        for index, node in enumerate(again.nodes):
            c = node.client()
            assert c.dbsize() == sizes[index] >= 10
            assert b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
            c.close()
        client = again.client()
        for index in range(3):
            for key in keys_for(LAYOUT, index, 10, "saved"):
                assert client.get(key) == key[::-1]
        client.close()
        assert [s.ranges for s in read_layout(again.url).shards] == [s.ranges for s in LAYOUT.shards]


def test_a_key_in_the_wrong_file_is_named(engine, tmp_path):
    foo = key_slot(b"foo")  # 12182: alpha's
    assert LAYOUT.shard_of(foo) == 0
    with EngineServer(engine) as plain:
        c = plain.client()
        c.set("foo", "x")
        c.mset({k: "y" for k in keys_for(LAYOUT, 1, 3, "ok")})
        c.close()
        wrong = tmp_path / "beta.rdb"
        wrong.write_bytes(plain.save().read_bytes())
    before = set(live_servers())
    bad = LocalCluster(engine, LAYOUT, [None, wrong, None])
    with pytest.raises(EngineError, match=f"shard beta .*slot {foo}, which the layout gives to alpha") as info:
        bad.start()
    assert "\n" not in str(info.value)
    assert set(live_servers()) <= before  # every node started for it was stopped again


def test_formation_timeout_reports_log_tails(engine):
    # nodes still get the normal start timeout; the 2 s writable delay of a new cluster outlasts this one
    slow = LocalCluster(engine, SlotLayout.even(2), [None, None], timeout=0.2)
    before = set(live_servers())
    expected = r"did not form within 0.2s \(.*\); last log lines: shard-0001 \(port \d+\): "
    with pytest.raises(EngineError, match=expected):
        slow.start()
    assert set(live_servers()) <= before
    slow.stop()  # idempotent


def test_one_shard_cluster_restarts_on_its_file(get_engine, tmp_path):
    engine = get_engine("valkey-8.1")
    with EngineServer(engine) as plain:
        plain.client().mset({"a": "1", "b": "2"})
        source = tmp_path / "all.rdb"
        source.write_bytes(plain.save().read_bytes())
    with LocalCluster(engine, SlotLayout.even(1), [source]) as single:
        client = single.client()
        assert client.get("a") == b"1" and client.get("b") == b"2"
        client.set("c", "3")
        client.close()
        assert read_layout(single.url).shards[0].ranges == ((0, 16383),)
        single.stop()
        with pytest.raises(EngineError, match="not running"):
            single.client()
        single.start()  # fresh nodes load the file again: "c" was never saved
        client = single.client()
        assert client.get("a") == b"1" and client.get("c") is None
        client.close()


def test_files_must_match_the_shards(get_engine):
    with pytest.raises(SnaptoolError, match="3 shards need 3 files"):
        LocalCluster(get_engine(None), SlotLayout.even(3), [None, None])


# ---------------------------------------------------------------------------- read_layout refusals

def test_read_layout_on_a_plain_node(engine):
    with EngineServer(engine) as plain:
        with pytest.raises(EngineError, match="not a cluster node"):
            read_layout(plain.url)


def test_read_layout_unreachable():
    port = free_port()
    with pytest.raises(EngineError, match=f"cannot reach cluster node redis://127.0.0.1:{port}"):
        read_layout(f"redis://127.0.0.1:{port}")


def test_read_layout_hides_the_password():
    port = free_port()
    with pytest.raises(EngineError) as info:
        read_layout(f"redis://user:secret@127.0.0.1:{port}")
    assert "secret" not in str(info.value) and "redis://user@127.0.0.1" in str(info.value)


def test_read_layout_refuses_unassigned_slots(engine):
    with EngineServer(engine, cluster=True, assign_slots=False) as node:
        c = node.client()
        c.execute_command("CLUSTER", "ADDSLOTS", *range(16000))
        c.close()
        with pytest.raises(SnaptoolError, match="slots 16000-16383 are assigned to no node") as info:
            read_layout(node.url)
        assert not isinstance(info.value, EngineError)
