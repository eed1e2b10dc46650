"""snaptool.rdb.slots: even splits as redis-cli makes them, JSON / nodes.conf input, validation messages."""

from __future__ import annotations

import json
import random

import pytest

from snaptool.errors import SnaptoolError
from snaptool.rdb.slots import SLOTS, Shard, SlotLayout

# `redis-cli --cluster create` (7.0.15) printed these "Master[i] -> Slots first - last" lines;
# here are the last slots of each master. 78 and 87 are the smallest counts where single-precision
# arithmetic (what redis-cli uses) gives other boundaries than double precision would.
REDIS_CLI_LAST = {
    3: [5460, 10922, 16383],
    5: [3276, 6553, 9829, 13106, 16383],
    7: [2340, 4680, 7021, 9361, 11702, 14042, 16383],
    78: [209, 419, 629, 839, 1049, 1259, 1469, 1679, 1889, 2100, 2310, 2520, 2730, 2940, 3150, 3360,
         3570, 3780, 3990, 4200, 4410, 4620, 4830, 5040, 5250, 5460, 5670, 5880, 6090, 6301, 6511, 6721,
         6931, 7141, 7351, 7561, 7771, 7981, 8191, 8401, 8611, 8821, 9031, 9241, 9451, 9661, 9871, 10081,
         10292, 10502, 10712, 10922, 11132, 11342, 11552, 11762, 11972, 12182, 12392, 12602, 12812, 13022,
         13232, 13442, 13652, 13862, 14072, 14283, 14493, 14703, 14913, 15123, 15333, 15543, 15753, 15963,
         16173, 16383],
    87: [187, 376, 564, 752, 941, 1129, 1317, 1506, 1694, 1882, 2071, 2259, 2447, 2636, 2824, 3012, 3200,
         3389, 3577, 3765, 3954, 4142, 4330, 4519, 4707, 4895, 5084, 5272, 5460, 5649, 5837, 6025, 6214,
         6402, 6590, 6779, 6967, 7155, 7344, 7532, 7720, 7909, 8097, 8285, 8473, 8662, 8850, 9038, 9227,
         9415, 9603, 9792, 9980, 10168, 10357, 10545, 10733, 10922, 11110, 11298, 11487, 11675, 11863,
         12052, 12240, 12428, 12617, 12805, 12993, 13182, 13370, 13558, 13747, 13935, 14123, 14311, 14500,
         14688, 14876, 15065, 15253, 15441, 15630, 15818, 16006, 16195, 16383],
}

# CLUSTER NODES of a Redis 6.2.5 primary migrating slot 100, with one replica (captured live).
REDIS62_CLUSTER_NODES = """\
cf3a88333a9cfb08d41187aa88d11f7541726323 127.0.0.1:53463@63463 master - 0 1795672277503 2 connected 5461-10922
a44010de12727a7d8bb42ec4eee8735dbbc590e6 127.0.0.1:45269@55269 myself,master - 0 1795672276000 1 connected 0-5460 16000-16383 [100->-cf3a88333a9cfb08d41187aa88d11f7541726323]
e65fa884f75a328966e3cfc37630480f8ce6556c 127.0.0.1:54515@64515 slave cf3a88333a9cfb08d41187aa88d11f7541726323 0 1795672278506 2 connected
260239b8122844d8899362f2d841f53d67231ac5 127.0.0.1:45879@55879 master - 0 1795672277000 3 connected 10923-15999
"""

# nodes.conf of a Valkey 8.1.8 primary importing slot 100 (aux fields in the address, vars line).
VALKEY81_NODES_CONF = """\
8fe9dff2e723497d60482e16386063bfe6304bd7 127.0.0.1:42421@52421 master - 0 1795672272059 1 connected 0-5460 16000-16383
395f0429a6eae788e2836b976bac0f6b1418abb7 127.0.0.1:46963@56963,,tls-port=0,shard-id=a7873d413da17de237be13468635224d8b8133ad myself,master - 0 0 2 connected 5461-10922 [100-<-8fe9dff2e723497d60482e16386063bfe6304bd7]
34ac0e968af4ce39bfaeebfc5bd70e9fbb293d2a 127.0.0.1:45197@55197,,tls-port=0,shard-id=a7873d413da17de237be13468635224d8b8133ad slave 395f0429a6eae788e2836b976bac0f6b1418abb7 0 1795672272161 2 connected
00f17dddece03999592e76fa3410e5b345f2826b 127.0.0.1:50131@60131,,tls-port=0,shard-id=edb9b4cb3f18aee227f6ea9898cb0adfac4a5270 master - 0 1795672273064 3 connected 10923-15999
vars currentEpoch 3 lastVoteEpoch 0
"""


def ranges(layout: SlotLayout) -> list[tuple[tuple[int, int], ...]]:
    return [s.ranges for s in layout.shards]


def error_of(data) -> str:
    with pytest.raises(SnaptoolError) as info:
        SlotLayout.from_json(data)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------- even splits

@pytest.mark.parametrize("n", sorted(REDIS_CLI_LAST))
def test_even_matches_redis_cli(n):
    layout = SlotLayout.even(n)
    lasts = REDIS_CLI_LAST[n]
    firsts = [0] + [last + 1 for last in lasts[:-1]]
    assert ranges(layout) == [((first, last),) for first, last in zip(firsts, lasts)]


def test_even_small_counts_and_names():
    assert ranges(SlotLayout.even(1)) == [((0, 16383),)]
    assert ranges(SlotLayout.even(2)) == [((0, 8191),), ((8192, 16383),)]
    assert [s.name for s in SlotLayout.even(3).shards] == ["shard-0001", "shard-0002", "shard-0003"]
    assert [s.name for s in SlotLayout.even(2, ["a", "b"]).shards] == ["a", "b"]
    assert SlotLayout.even(3).describe() == ("shard-0001 0-5460 (5461 slots), shard-0002 5461-10922 (5462 slots), "
                                             "shard-0003 10923-16383 (5461 slots)")


def test_even_one_slot_per_shard():
    layout = SlotLayout.even(SLOTS)
    assert ranges(layout) == [((i, i),) for i in range(SLOTS)]
    assert layout.shards[-1].name == "shard-16384"
    assert layout.shard_of(12345) == 12345
    with pytest.raises(SnaptoolError, match="255"):
        layout.owner_table()


@pytest.mark.parametrize("n", [7542, 9215, 16372, 16383] + random.Random(7).sample(range(100, SLOTS), 12))
def test_even_large_counts_stay_valid(n):
    """Above ~7500 shards redis-cli's float error would run past slot 16383; ours still owns each slot once."""
    layout = SlotLayout.even(n)
    assert len(layout.shards) == n
    assert all(s.slot_count() >= 1 for s in layout.shards)
    counts = {s.slot_count() for s in layout.shards}
    assert max(counts) - min(counts) <= 2 or n > 7000


@pytest.mark.parametrize("n", [0, -1, SLOTS + 1, 2.0, True])
def test_even_refuses_impossible_counts(n):
    with pytest.raises(SnaptoolError, match="between 1 and 16384"):
        SlotLayout.even(n)


def test_even_needs_one_name_per_shard():
    with pytest.raises(SnaptoolError, match="3 shards need 3 names"):
        SlotLayout.even(3, ["a", "b"])


# ---------------------------------------------------------------------------- lookups

def test_owner_table_shard_of_and_owns():
    layout = SlotLayout.from_json([{"name": "a", "slots": [[0, 99], 16383]},
                                   {"name": "b", "slots": [[100, 16382]]}])
    table = layout.owner_table()
    assert len(table) == SLOTS and table[0] == table[99] == table[16383] == 0 and table[100] == 1
    assert set(table) == {0, 1}
    assert [layout.shard_of(s) for s in (0, 99, 100, 16382, 16383)] == [0, 0, 1, 1, 0]
    a, b = layout.shards
    assert a.owns(16383) and a.owns(0) and not a.owns(100) and b.owns(100) and not b.owns(16383)
    assert (a.slot_count(), b.slot_count()) == (101, 16283)
    with pytest.raises(SnaptoolError):
        layout.shard_of(SLOTS)


def test_shard_ranges_are_normalised():
    shard = Shard("x", ((10, 20), (0, 9), (15, 30), (40, 40)))
    assert shard.ranges == ((0, 30), (40, 40))
    assert shard.slot_count() == 32
    with pytest.raises(SnaptoolError, match="not within 0-16383"):
        Shard("x", ((16000, 16384),))
    with pytest.raises(SnaptoolError, match="not within"):
        Shard("x", ((5, 4),))


# ---------------------------------------------------------------------------- JSON

def test_json_round_trip_and_load(tmp_path):
    layout = SlotLayout.from_json([{"name": "left", "slots": [[0, 8000], 8001, [8002, 8191]]},
                                   {"name": "right", "slots": [[8192, 16383]]}])
    assert layout.to_json() == [{"name": "left", "slots": [[0, 8191]]}, {"name": "right", "slots": [[8192, 16383]]}]
    assert SlotLayout.from_json(layout.to_json()) == layout == SlotLayout.even(2, ["left", "right"])
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(layout.to_json()))
    assert SlotLayout.load(path) == layout
    path.write_text(json.dumps({"shards": layout.to_json()}))  # a wrapped list is fine too
    assert SlotLayout.load(str(path)) == layout
    even = SlotLayout.even(7)
    assert SlotLayout.from_json(json.loads(json.dumps(even.to_json()))) == even


@pytest.mark.parametrize("data, message", [
    ({"name": "a"}, "JSON list"),
    ([{"name": "a"}], "\"name\" and \"slots\""),
    ([{"name": 1, "slots": []}], "not a string"),
    ([{"name": "a", "slots": "0-16383"}], "must be a list"),
    ([{"name": "a", "slots": [[0, 1, 2]]}], "neither a slot number"),
    ([{"name": "a", "slots": [True]}], "neither a slot number"),
    ([{"name": "a", "slots": [[0, 16384]]}], "not within 0-16383"),
])
def test_json_shape_errors(data, message):
    assert message in error_of(data)


# ---------------------------------------------------------------------------- validation messages

def test_gaps_are_one_compressed_line():
    assert error_of([{"name": "a", "slots": [[0, 99], [200, 4999], [5001, 16383]]}]) == \
        "slots 100-199 and 5000 are owned by no shard"
    assert error_of([{"name": "a", "slots": [[1, 16383]]}]) == "slot 0 is owned by no shard"


def test_overlaps_name_both_shards():
    assert error_of([{"name": "shard-0001", "slots": [[0, 7000]]}, {"name": "shard-0002", "slots": [[7000, 16383]]}]) \
        == "slot 7000 is owned by shard-0001 and shard-0002"
    message = error_of([{"name": "a", "slots": [[0, 99], [200, 16383]]},
                        {"name": "b", "slots": [[150, 250], 5000]}])
    assert message == "slots 100-149 are owned by no shard; slots 200-250 and 5000 are owned by a and b"


def test_long_lists_are_capped():
    message = error_of([{"name": "a", "slots": [[i, i] for i in range(0, SLOTS, 2)]}])
    assert message.startswith("slots 1, 3, 5, 7, 9, 11 and 8186 more ranges are owned by no shard")
    assert len(message) < 200


def test_name_errors():
    assert error_of([{"name": "a", "slots": [[0, 100]]}, {"name": "a", "slots": [[101, 16383]]}]) == \
        "shard name 'a' is used more than once"
    for bad in ("", "a/b", "a,b", "..", "a\nb"):
        assert "cannot be used as a file name" in error_of([{"name": bad, "slots": [[0, 16383]]}])
    both = error_of([{"name": "x/y", "slots": [[0, 100]]}, {"name": "x/y", "slots": [[100, 16383]]}])
    assert "file name" in both and "more than once" in both and "slot 100 is owned by x/y and x/y" in both


def test_empty_layout():
    assert error_of([]) == "the slot layout has no shards"


def test_direct_construction_validates_too():
    with pytest.raises(SnaptoolError, match="owned by no shard"):
        SlotLayout((Shard("a", ((0, 10),)),))


# ---------------------------------------------------------------------------- nodes.conf / CLUSTER NODES

def test_cluster_nodes_text_from_redis_62():
    layout = SlotLayout.from_nodes_text(REDIS62_CLUSTER_NODES)
    assert [s.name for s in layout.shards] == ["a44010de", "cf3a8833", "260239b8"]  # by first slot
    assert ranges(layout) == [((0, 5460), (16000, 16383)), ((5461, 10922),), ((10923, 15999),)]


def test_nodes_conf_from_valkey_81(tmp_path):
    layout = SlotLayout.from_nodes_text(VALKEY81_NODES_CONF)
    assert layout.to_json() == [{"name": "8fe9dff2", "slots": [[0, 5460], [16000, 16383]]},
                                {"name": "395f0429", "slots": [[5461, 10922]]},
                                {"name": "00f17ddd", "slots": [[10923, 15999]]}]
    path = tmp_path / "nodes-6379.conf"
    path.write_text(VALKEY81_NODES_CONF)
    assert SlotLayout.load(path) == layout


def test_nodes_text_single_slots_duplicate_prefixes_and_slotless_primaries():
    text = ("aaaaaaaa00000000000000000000000000000001 10.0.0.1:6379@16379 master - 0 0 1 connected 0-100 101 102-8191\n"
            "aaaaaaaa00000000000000000000000000000002 10.0.0.2:6379@16379 master,fail - 0 0 2 connected 8192-16383\n"
            "bbbbbbbb00000000000000000000000000000003 10.0.0.3:6379@16379 master - 0 0 3 connected\n")
    layout = SlotLayout.from_nodes_text(text)
    assert [s.name for s in layout.shards] == ["aaaaaaaa00000000000000000000000000000001",
                                               "aaaaaaaa00000000000000000000000000000002"]
    assert ranges(layout) == [((0, 8191),), ((8192, 16383),)]


def test_nodes_text_errors():
    with pytest.raises(SnaptoolError, match="line 1 is not a cluster node line"):
        SlotLayout.from_nodes_text("hello world\n")
    with pytest.raises(SnaptoolError, match="owned by no shard"):
        SlotLayout.from_nodes_text(REDIS62_CLUSTER_NODES.replace(" 10923-15999", ""))
    with pytest.raises(SnaptoolError, match="'x-1' is not a slot"):
        SlotLayout.from_nodes_text(REDIS62_CLUSTER_NODES.replace("10923-15999", "x-1"))


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(SnaptoolError, match=f"cannot read slot layout {missing}"):
        SlotLayout.load(missing)
    for content, message in ((b"[{", "invalid JSON"), (b"", "empty"), (b"\xff\xfe\x00", "not a text file"),
                             (b'[{"name": "a", "slots": [[0, 5]]}]', "slots 6-16383 are owned by no shard")):
        path = tmp_path / "bad.json"
        path.write_bytes(content)
        with pytest.raises(SnaptoolError, match=message) as info:
            SlotLayout.load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
