"""Shared helpers of the benchmark scripts (scripts/bench-rdb, scripts/bench-backup).

* the cached data set: bench-data/bench-x<scale>.rdb and friends, generated once by a real engine
  (see scripts/bench-rdb for what it holds) and reused while its parameters stay the same;
* run_measured(): one command in a subprocess, wall time from the parent's clock and the child's
  peak RSS;
* machine() and source_fingerprint(): what ran the benchmark and which snaptool sources it measured;
* moto_server(), aws_environment(), string_rdb() and peak_rss_mb(): an S3 endpoint, a large file
  and a server's memory, for the S3 benchmark (scripts/bench-s3).

The scripts import this module after re-executing themselves with .venv/bin/python.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from snaptool.engines.discovery import Engine, find_engine  # noqa: E402
from snaptool.engines.server import EngineServer  # noqa: E402

DATA_DIR = ROOT / "bench-data"
BIN = ROOT / ".venv" / "bin"
SNAPTOOL = str(BIN / "snaptool")
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

GENERATOR_VERSION = 1  # bump when the data set changes (invalidates the cache)
SEED = 20241126
BATCH = 10_000  # commands per pipeline round trip
TTL_BASE_MS = 2051222400000  # 2035-01-01: TTLs stay in the future

# Counts at --scale 1 (tuned so the Redis 7.0 file is ~90 MB with ~2 M keys).
COUNTS = {
    "strings": 1_600_000,
    "hashes": 100_000,
    "lists": 100_000,
    "zsets": 100_000,
    "sets": 20_000,
    "big_hash_fields": 25_000,
    "big_list_elements": 50_000,
    "big_zset_members": 25_000,
    "big_set_members": 25_000,
}

#: the prefix of log lines ("bench-rdb", "bench-backup"); each script sets its own
NAME = "bench"


def log(msg: str) -> None:
    print(f"[{NAME} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data generation
class Blob:
    """Random base64 text; values are slices at random offsets (unique, LZF-incompressible)."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng = rng
        self.data = base64.b64encode(rng.randbytes(size * 3 // 4))
        self.size = len(self.data)

    def take(self, lo: int, hi: int) -> bytes:
        n = self.rng.randint(lo, hi)
        off = self.rng.randrange(0, self.size - n)
        return self.data[off:off + n]


def _scaled(scale: float) -> dict[str, int]:
    return {k: max(1, int(round(v * scale))) for k, v in COUNTS.items()}


def _flush(pipe, pending: int) -> int:
    if pending:
        pipe.execute()
    return 0


def populate(client, scale: float, seed: int = SEED) -> int:
    """Write the data set; return the number of keys written."""
    rng = random.Random(seed)
    blob = Blob(rng, 16 << 20)
    c = _scaled(scale)
    pipe = client.pipeline(transaction=False)
    pending = 0
    t0 = time.monotonic()

    # strings: 90 % via MSET (100 pairs per command), 10 % SET ... PXAT
    n = c["strings"]
    i = 0
    while i < n:
        if i % 10 == 0:
            pipe.execute_command("SET", b"s:%09d" % i, blob.take(20, 32), "PXAT",
                                 TTL_BASE_MS + rng.randrange(0, 10**9))
            i += 1
        else:
            end = min(n, (i // 10) * 10 + 10)  # up to the next TTL key
            flat: list[bytes] = []
            for j in range(i, end):
                flat += (b"s:%09d" % j, blob.take(20, 32))
            pipe.execute_command("MSET", *flat)
            i = end
        pending += 1
        if pending >= BATCH // 10:  # each MSET holds ~9 keys: ~10k keys per round trip
            pending = _flush(pipe, pending)
    pending = _flush(pipe, pending)
    log(f"  strings: {n:,} ({time.monotonic() - t0:.1f}s)")

    for i in range(c["hashes"]):
        flat = []
        for f in range(rng.randint(2, 4)):
            flat += (b"field%d" % f, blob.take(6, 14))
        pipe.execute_command("HSET", b"h:%09d" % i, *flat)
        pending += 1
        if pending >= BATCH:
            pending = _flush(pipe, pending)
    for i in range(c["lists"]):
        pipe.execute_command("RPUSH", b"l:%09d" % i, *(blob.take(6, 14) for _ in range(rng.randint(2, 4))))
        pending += 1
        if pending >= BATCH:
            pending = _flush(pipe, pending)
    for i in range(c["zsets"]):
        flat = []
        for _ in range(rng.randint(2, 4)):
            flat += (str(rng.randrange(0, 10**6)).encode(), blob.take(6, 14))
        pipe.execute_command("ZADD", b"z:%09d" % i, *flat)
        pending += 1
        if pending >= BATCH:
            pending = _flush(pipe, pending)
    for i in range(c["sets"]):
        if i % 2:
            members = [str(rng.randrange(0, 10**6)).encode() for _ in range(rng.randint(3, 8))]  # intset
        else:
            members = [blob.take(8, 16) for _ in range(rng.randint(3, 8))]
        pipe.execute_command("SADD", b"t:%09d" % i, *members)
        pending += 1
        if pending >= BATCH:
            pending = _flush(pipe, pending)
    pending = _flush(pipe, pending)
    log(f"  small collections ({time.monotonic() - t0:.1f}s)")

    # a few large keys (hashtable / quicklist / skiplist / hashtable encodings), 1000 items per command
    def big(cmd: str, key: bytes, total: int, make) -> None:
        nonlocal pending
        for start in range(0, total, 1000):
            pipe.execute_command(cmd, key, *make(min(1000, total - start), start))
            pending += 1
            if pending >= 20:
                pending = _flush(pipe, pending)
        pending = _flush(pipe, pending)

    def hash_items(k: int, start: int) -> list[bytes]:
        out: list[bytes] = []
        for j in range(start, start + k):
            out += (b"f%08d" % j, blob.take(16, 48))
        return out

    def zset_items(k: int, start: int) -> list[bytes]:
        out: list[bytes] = []
        for j in range(start, start + k):
            out += (repr(rng.uniform(-1e9, 1e9)).encode(), b"m%08d" % j)
        return out

    big("HSET", b"big:hash", c["big_hash_fields"], hash_items)
    big("RPUSH", b"big:list", c["big_list_elements"], lambda k, s: [blob.take(16, 64) for _ in range(k)])
    big("ZADD", b"big:zset", c["big_zset_members"], zset_items)
    big("SADD", b"big:set", c["big_set_members"], lambda k, s: [b"e%08d" % j for j in range(s, s + k)])
    log(f"  big keys ({time.monotonic() - t0:.1f}s)")
    return int(client.dbsize())


def populate_big_list(client, gigabytes: float, seed: int = SEED) -> int:
    rng = random.Random(seed)
    blob = Blob(rng, 64 << 20)
    total = int(gigabytes * (1 << 30) / 1024)
    pipe = client.pipeline(transaction=False)
    pending = 0
    t0 = time.monotonic()
    for start in range(0, total, 1000):
        k = min(1000, total - start)
        pipe.execute_command("RPUSH", b"big:list", *(blob.take(1024, 1024) for _ in range(k)))
        pending += 1
        if pending >= 16:
            pending = _flush(pipe, pending)
        if start and start % 200_000 == 0:
            log(f"  {start:,}/{total:,} elements ({time.monotonic() - t0:.0f}s)")
    _flush(pipe, pending)
    return int(client.dbsize())


def _generate(path: Path, meta: dict, engine: Engine, fill) -> dict:
    if path.exists() and not meta.get("regen"):
        meta_path = path.with_suffix(".meta.json")
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            if all(old.get(k) == v for k, v in meta["params"].items()):
                return old
    DATA_DIR.mkdir(exist_ok=True)
    log(f"generating {path.name} with {engine.describe()} ...")
    t0 = time.monotonic()
    with EngineServer(engine, start_timeout=600) as server:
        client = server.client(socket_timeout=600)
        keys = fill(client)
        info = client.info("memory")
        client.close()
        log(f"  {keys:,} keys, used_memory {info['used_memory'] / 2**20:.0f} MB; SAVE ...")
        saved = server.save()
        tmp = path.with_suffix(".rdb.tmp")
        shutil.copyfile(saved, tmp)
    os.replace(tmp, path)
    out = dict(meta["params"])
    out.update(keys=keys, bytes=path.stat().st_size, engine=engine.name,
               header=path.read_bytes()[:9].decode("latin-1"),
               generated_in_s=round(time.monotonic() - t0, 1))
    path.with_suffix(".meta.json").write_text(json.dumps(out, indent=2) + "\n")
    log(f"  wrote {path} ({out['bytes'] / 1e6:.1f} MB) in {out['generated_in_s']}s")
    return out


def dataset(scale: float, engine_spec: str, suffix: str, regen: bool) -> tuple[Path, dict]:
    engine = find_engine(engine_spec)
    tag = f"{scale:g}".replace(".", "_")
    path = DATA_DIR / f"bench-x{tag}{suffix}.rdb"
    params = {"generator": GENERATOR_VERSION, "seed": SEED, "scale": scale, "counts": _scaled(scale),
              "engine_target": engine.target_name}
    meta = _generate(path, {"params": params, "regen": regen}, engine, lambda c: populate(c, scale))
    return path, meta


def big_key_dataset(gigabytes: float, regen: bool) -> tuple[Path, dict]:
    engine = find_engine("redis-7.0")
    path = DATA_DIR / f"bench-biglist-{gigabytes:g}gb.rdb"
    params = {"generator": GENERATOR_VERSION, "seed": SEED, "big_key_gb": gigabytes,
              "engine_target": engine.target_name}
    meta = _generate(path, {"params": params, "regen": regen}, engine,
                     lambda c: populate_big_list(c, gigabytes))
    return path, meta


# ----------------------------------------------------------------------------- measuring
def run_measured(argv: list[str], stdout_path: str = os.devnull, stdin_path: str | None = None) -> dict:
    """Run argv; return wall seconds (parent clock) and peak RSS in MB of the child."""
    with open(stdout_path, "wb") as out, tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            if TIME_BIN:
                cmd = [TIME_BIN, "-f", "%e %M", "-o", tf.name, *argv]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, stdin=stdin)
                wall = time.perf_counter() - t0
                fields = (tf.read().strip().splitlines() or ["0 0"])[-1].split()
                rss_kb = int(fields[-1])
            else:
                t0 = time.perf_counter()
                p = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, stdin=stdin)
                err_data = p.stderr.read()
                _, status, ru = os.wait4(p.pid, 0)
                wall = time.perf_counter() - t0
                p.returncode = os.waitstatus_to_exitcode(status)
                proc = subprocess.CompletedProcess(argv, p.returncode, None, err_data)
                rss_kb = ru.ru_maxrss
        finally:
            if stdin_path:
                stdin.close()
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {' | '.join(tail)}")
    return {"seconds": wall, "rss_mb": rss_kb / 1024}


# ----------------------------------------------------------------------------- machine
def source_fingerprint() -> str:
    """sha256 (12 hex digits) over snaptool/**/*.py: which code was measured (no git needed)."""
    h = hashlib.sha256()
    for f in sorted((ROOT / "snaptool").rglob("*.py")):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def machine(tools: dict[str, str] | None = None) -> dict:
    """CPU, RAM, disk, OS and versions; ``tools`` adds "name": "version" entries of other tools."""
    cpu = re.search(r"Model name:\s*(.+)", _sh("lscpu"))
    mem_kb = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    osr = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()) \
        if Path("/etc/os-release").exists() else None
    DATA_DIR.mkdir(exist_ok=True)
    df = _sh(f"df -h --output=source,fstype,size,avail {DATA_DIR} | tail -1")
    dev = df.split()[0] if df else ""
    rota = _sh(f"lsblk -ndo ROTA {dev}") if dev.startswith("/dev/") else ""
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_kb.group(1)) / 2**20, 1) if mem_kb else None,
        "disk": df + (" (rotational)" if rota == "1" else " (non-rotational)" if rota == "0" else ""),
        "python": platform.python_version(),
        "os": (osr.group(1) if osr else platform.system()) + f", kernel {platform.release()}",
        "redis_server": _sh("redis-server --version"),
        "snaptool": _sh(f"{SNAPTOOL} --version"),
        **(tools or {}),
        "time_source": "/usr/bin/time -f '%e %M'" if TIME_BIN else "wait4() rusage",
    }


# ----------------------------------------------------------------------------- S3 and large files
def moto_server(**env: str) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """moto's S3 server (real HTTP) in its own process on a free loopback port, as the tests start
    it (tests/s3_support.py); yields its URL and process id."""
    sys.path.insert(0, str(ROOT / "tests"))
    from s3_support import moto_process

    return moto_process(**env)


def aws_environment(endpoint: str, work: Path, region: str = "us-east-1") -> dict[str, str]:
    """The standard AWS environment pointed at ``endpoint``, nothing from the machine's own setup
    (the caller puts it into os.environ, so the snaptool processes it starts inherit it)."""
    empty = work / "aws-empty-config"
    empty.write_text("")
    return {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region, "AWS_ENDPOINT_URL": endpoint, "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty)}


def string_rdb(path: Path, size: int, value_size: int = 1 << 20, seed: int = SEED) -> dict:
    """Write an RDB 10 file of about ``size`` bytes made of random (incompressible) string values of
    ``value_size`` bytes: a large file in seconds, for benchmarks where the bytes matter, not the
    key count. Returns what it holds."""
    from snaptool.rdb.builder import RdbBuilder
    from snaptool.rdb.targets import parse_target

    rng = random.Random(seed)
    keys = max(1, size // value_size)
    t0 = time.monotonic()
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-7.0"))
        for i in range(keys):
            builder.add(b"blob:%08d" % i, "string", rng.randbytes(value_size))
        written = builder.finish()
    return {"path": str(path), "bytes": written, "keys": keys, "value_bytes": value_size,
            "generated_in_s": round(time.monotonic() - t0, 1)}


def peak_rss_mb(pid: int) -> float | None:
    """The high-water mark of a running process's resident memory (VmHWM), in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None
