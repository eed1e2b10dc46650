"""The migration's pipelined writer against a live 2-node cluster whose slots change hands."""

from __future__ import annotations

import itertools
from contextlib import closing
from typing import Iterator

import pytest

from snaptool.engines.cluster import LocalCluster
from snaptool.engines.resp import encode
from snaptool.jobs.migrate_resp import RedisTarget
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.slots import SlotLayout

LAYOUT = SlotLayout.even(2)


@pytest.fixture
def cluster(get_engine) -> Iterator[LocalCluster]:
    with LocalCluster(get_engine("redis-7.0"), LAYOUT, [None, None]) as running:
        yield running


def keys_of_shard(shard: int, count: int) -> list[bytes]:
    """``count`` keys sharing one slot that ``shard`` owns (a hash tag)."""
    tag = next(f"t{i}" for i in itertools.count() if LAYOUT.shard_of(key_slot(f"t{i}".encode())) == shard)
    return [f"{{{tag}}}:{n}".encode() for n in range(count)]


def node_id(node) -> bytes:
    return node.client().execute_command("CLUSTER", "MYID")


def in_slot(node, slot: int) -> int:
    return node.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)


def test_a_slot_moved_after_the_map_was_read_is_followed_and_remembered(cluster: LocalCluster) -> None:
    keys = keys_of_shard(0, 6)
    slot = key_slot(keys[0])
    old, new = cluster.nodes
    with closing(RedisTarget(old.address)) as target:
        for node in (new, old):  # the slot changes hands after the writer read CLUSTER SLOTS
            node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id(new))
        for key in keys[:4]:
            target.add(key, encode(b"SET", key, key))
        assert target.flush() == 4 and target.redirects == 4  # each answered MOVED, then written there
        target.add(keys[4], encode(b"SET", keys[4], b"x"))
        target.add_many([keys[5]], [encode(b"SET", keys[5], b"y")])
        assert target.flush() == 6 and target.redirects == 4  # the map was updated: no new redirect
        assert target.read([(k, encode(b"GET", k)) for k in keys]) == keys[:4] + [b"x", b"y"]
    assert (in_slot(new, slot), in_slot(old, slot)) == (6, 0)


def test_a_migrating_slot_is_followed_with_asking(cluster: LocalCluster) -> None:
    keys = keys_of_shard(1, 3)
    slot = key_slot(keys[0])
    importing, source = cluster.nodes
    with closing(RedisTarget(source.address)) as target:
        importing.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", node_id(source))
        source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", node_id(importing))
        for key in keys:  # not on the source: it answers ASK, and the map is left as it is
            target.add(key, encode(b"SET", key, b"v"))
        assert target.flush() == 3 and target.redirects == 3
    assert (in_slot(importing, slot), in_slot(source, slot)) == (3, 0)
