"""SlotMap against a live 2-node cluster and a standalone node."""

from __future__ import annotations

import pytest

from snaptool.engines.cluster import LocalCluster
from snaptool.engines.resp import RespConnection
from snaptool.engines.slot_map import SlotMap
from snaptool.errors import EngineError
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.slots import SlotLayout


def test_owners_primaries_and_a_slot_no_node_serves(get_engine, engine_server) -> None:
    engine = get_engine("redis-7.0")
    with LocalCluster(engine, SlotLayout.even(2), [None, None]) as cluster:
        first, second = cluster.nodes
        high = next(k for k in (b"k%d" % i for i in range(1000)) if key_slot(k) > 8192)
        gone = next(k for k in (b"k%d" % i for i in range(1000)) if key_slot(k) < 8192)
        first.client().execute_command("CLUSTER", "DELSLOTS", key_slot(gone))  # now nobody's
        nodes = SlotMap(first.address, True, RespConnection, 10.0)
        try:
            assert nodes.owner(high).name == second.address.redacted()  # made on first use, once
            assert set(nodes.conns) == {first.address.endpoint, second.address.endpoint}
            assert {a.endpoint for a in nodes.primaries()} == set(nodes.conns)
            with pytest.raises(EngineError, match=rf"slot {key_slot(gone)} of key 'k\d+' is served by no node"):
                nodes.owner(gone)
            code, there = nodes.redirect(f"ASK {key_slot(high)} {first.host}:{first.port}", "GET")
            assert code == "ASK" and there.name == first.address.redacted()
            assert nodes.owner(high).name == second.address.redacted()  # ASK leaves the map as it is
            code, there = nodes.redirect(f"MOVED {key_slot(high)} :{first.port}", "GET")  # naming no host
            assert code == "MOVED" and nodes.owner(high) is there and there.name == first.address.redacted()
            for bad in ("MOVED", "MOVED x 1.2.3.4:5", "ASK 12 1.2.3.4:port", "MOVED 16384 1.2.3.4:5", "MOVED -1 h:5"):
                with pytest.raises(EngineError, match=rf"^GET k1: unexpected reply '{bad}'$"):
                    nodes.redirect(bad, "GET k1")
        finally:
            nodes.close()
        assert nodes.conns == {}
    node = engine_server(engine)
    single = SlotMap(node.address, False, RespConnection, 10.0)
    assert single.owner(high) is single.owner(gone) is single.single and single.primaries() == [node.address]
    with pytest.raises(EngineError, match="unexpected reply"):
        single.redirect(f"MOVED 5 {node.host}:{node.port}", "SET k1")
    single.close()
