import sys
sys.path.insert(0, '/work/main/tests/engines')
from test_cluster import LAYOUT, cluster, engine
from snaptool.engines.cluster import read_layout, _migrations, _connect, _primaries_from_shards
def test_x(cluster):
    ids = [node.client().execute_command("CLUSTER", "MYID").decode() for node in cluster.nodes]
    s = cluster.nodes[0].client()
    print(s.execute_command("CLUSTER", "SETSLOT", 100, "MIGRATING", ids[1]))
    print(s.execute_command("CLUSTER", "NODES"))
    c = _connect(cluster.url)
    print(_migrations(c), c.execute_command("CLUSTER", "NODES"))
    print(read_layout(cluster.url))
    assert 0
