"""Backups of live nodes and clusters through the replication protocol, restored and drilled."""

from __future__ import annotations

from pathlib import Path

import pytest

from snaptool.engines.address import NodeAddress
from snaptool.engines.cluster import LocalCluster
from snaptool.engines.sample import populate
from snaptool.engines.topology import read_topology
from snaptool.errors import SnaptoolError
from snaptool.jobs.backup import BackupOptions, backup
from snaptool.jobs.digest import digest_file
from snaptool.jobs.drill import drill
from snaptool.rdb.slots import SlotLayout
from snaptool.rdb.targets import parse_target
from snaptool.storage.catalog import Catalog, file_path
from snaptool.storage.repository import Repository


def _keyspace(client) -> dict[int, tuple[int, int]]:
    return {int(db[2:]): (int(v["keys"]), int(v["expires"])) for db, v in client.info("keyspace").items()}


@pytest.mark.parametrize("diskless", [False, True], ids=["disk", "diskless"])
def test_node_backup_equals_the_node(each_engine, engine_server, tmp_path: Path, diskless: bool) -> None:
    config = {"repl-diskless-sync": "yes", "repl-diskless-sync-delay": "0"} if diskless else {}
    server = engine_server(each_engine, config={"requirepass": "s3cret", **config})
    populate(server.client, each_engine)
    client = server.client()
    live_digest = client.execute_command("DEBUG", "DIGEST").decode()
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(f"redis://:s3cret@127.0.0.1:{server.port}", repo, BackupOptions(tags=("nightly",)))
    (entry,) = manifest.files
    assert {db: (s.keys, s.expires) for db, s in entry.databases.items()} == _keyspace(client)
    assert manifest.source["type"] == "node" and "s3cret" not in manifest.dumps().decode()
    assert manifest.source["engine"].startswith(each_engine.flavour) and entry.role == "primary"
    stored = repo.local_path(file_path(manifest.id, entry.name))
    assert digest_file(stored, parse_target(each_engine.target_name)).digest == live_digest
    assert drill(manifest.id, repo).ok


def test_cluster_backup_takes_each_shard_from_a_replica(get_engine, tmp_path: Path) -> None:
    engine = get_engine("redis-7.0")
    layout = SlotLayout.even(3)
    with LocalCluster(engine, layout, [None] * 3, replicas=1) as cluster:
        client = cluster.client()
        for i in range(3000):
            client.set(f"key:{i}", f"value:{i}")
            if i % 10 == 0:
                client.expire(f"key:{i}", 3600)
        for primary, group in zip(cluster.nodes, cluster.replica_nodes):  # replicas caught up
            _wait_synced(primary, group[0])
        _wait_seen_healthy(cluster)
        repo = Repository.open(str(tmp_path / "repo"))
        manifest = backup(cluster.url, repo)
        assert manifest.source["type"] == "cluster" and len(manifest.files) == 3
        assert [f.role for f in manifest.files] == ["replica"] * 3
        assert [f.slots for f in manifest.files] == [[list(r) for r in s.ranges] for s in layout.shards]
        replica_ports = {n.port for g in cluster.replica_nodes for n in g}
        assert {int(f.node.rsplit(":", 1)[1]) for f in manifest.files} == replica_ports
        assert manifest.keys == 3000 and sum(f.expires for f in manifest.files) == 300
        primary_only = backup(cluster.url, repo, BackupOptions(from_primary=True))
        assert [f.role for f in primary_only.files] == ["primary"] * 3
    report = drill(manifest.id, repo)
    assert report.ok, [c for c in report.checks if not c.ok]


def _wait_synced(primary, replica) -> None:
    import time
    want = int(primary.client().info("replication")["master_repl_offset"])
    deadline = time.monotonic() + 30
    while int(replica.client().info("replication").get("slave_repl_offset", -1)) < want:
        assert time.monotonic() < deadline, "replica did not catch up"
        time.sleep(0.05)


def _wait_seen_healthy(cluster: LocalCluster) -> None:
    """Until the node the backup asks sees every replica connected and not failing: right after
    the cluster forms, its bus links to the replicas may still be coming up, and a backup then
    rightly takes that shard from its primary."""
    import time
    address = NodeAddress(cluster.nodes[0].host, cluster.nodes[0].port)
    deadline = time.monotonic() + 30
    while not all(any(r.healthy for r in shard.replicas) for shard in read_topology(address)):
        assert time.monotonic() < deadline, "the cluster never saw its replicas as healthy"
        time.sleep(0.05)


def test_cluster_backup_refuses_migrating_slots(get_engine, tmp_path: Path) -> None:
    engine = get_engine("redis-7.0")
    with LocalCluster(engine, SlotLayout.even(2), [None] * 2) as cluster:
        a, b = (n.client() for n in cluster.nodes)
        b_id = b.execute_command("CLUSTER", "MYID").decode()
        a.execute_command("CLUSTER", "SETSLOT", 100, "MIGRATING", b_id)
        repo = Repository.open(str(tmp_path / "repo"))
        with pytest.raises(SnaptoolError, match="slot 100 is being migrated"):
            backup(cluster.url, repo)
        assert Catalog(repo).list() == []


def test_a_node_dying_mid_transfer_leaves_no_snapshot(get_engine, engine_server, tmp_path: Path) -> None:
    engine = get_engine("redis-7.0")
    server = engine_server(engine)
    server.client().execute_command("DEBUG", "POPULATE", 300000, "k", 200)
    repo = Repository.open(str(tmp_path / "repo"))
    killed = []

    def progress_for(label, total):
        def progress(done, keys):
            if done > 1 << 20 and not killed:
                server.process.kill()
                killed.append(done)
        return progress

    with pytest.raises(SnaptoolError) as info:
        backup(server.url, repo, BackupOptions(timeout=5), progress_for=progress_for)
    assert killed and "127.0.0.1" in str(info.value)
    assert Catalog(repo).list() == []
