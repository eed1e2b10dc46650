"""`inspect --slots` and `inspect --html`: per-slot counts proven against a live cluster-mode node.

A small RDB (db 0 only: strings and hashes, keys sharing {hash tags}, a binary and a control-character
key among the biggest) is loaded into a cluster-mode engine; the engine's CLUSTER COUNTKEYSINSLOT
must equal our count for every one of the 16384 slots. The HTML report must be one offline document.
"""

from __future__ import annotations

import html
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from snaptool.jobs.inspect import inspect_file
from snaptool.jobs.report_html import render_html
from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.checksum import key_slot
from snaptool.rdb.slots import SLOTS, SlotLayout
from snaptool.rdb.targets import parse_target

ROOT = Path(__file__).resolve().parents[2]
BINARY_KEY = b'bin:\xff\xfe<&>"\x00end'
CONTROL_KEY = b"ctl:\x01\x1b[31mred"
FAR_FUTURE_MS = 4102444800000  # 2100-01-01: still set when the engine loads the file


def _keys() -> dict[bytes, tuple[str, object]]:
    rng = random.Random(7)
    keys: dict[bytes, tuple[str, object]] = {}
    for i in range(250):
        keys[b"user:%d" % i] = ("string", b"x" * rng.randint(1, 300))
    for i in range(60):  # all in one slot
        keys[b"{cart}:item:%d" % i] = ("string", b"%d" % i)
    for i in range(25):
        keys[b"{sess}:%d" % i] = ("hash", [(b"f%d" % j, b"v" * j, None) for j in range(1, rng.randint(2, 40))])
    for i in range(80):
        keys[b"h:%d" % i] = ("hash", [(b"f%d" % j, b"%d" % j, None) for j in range(rng.randint(1, 700))])
    keys[b"{}empty-tag"] = ("string", b"v")  # "{}" is no tag: the whole key is hashed
    keys[b"{open-tag"] = ("string", b"v")
    keys[b"big:blob"] = ("string", rng.randbytes(6000))
    keys[BINARY_KEY] = ("string", rng.randbytes(30000))
    keys[CONTROL_KEY] = ("hash", [(b"f%d" % j, b"y" * 60, None) for j in range(400)])
    return keys


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, tuple[str, object]]]:
    """The test RDB for redis-7.0 (RDB 10, loadable by 7.0 and Valkey 8.1)."""
    keys = _keys()
    path = tmp_path_factory.mktemp("inspect") / "slots.rdb"
    with open(path, "wb") as f:
        builder = RdbBuilder(f, parse_target("redis-7.0"))
        for n, (key, (kind, value)) in enumerate(keys.items()):
            builder.add(key, kind, value, expire_ms=FAR_FUTURE_MS if n % 9 == 0 else None)
        builder.finish()
    assert builder.keys == len(keys)
    return path, keys


def _snaptool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snaptool", *args], capture_output=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("target", ["redis-7.0", "valkey-8.1"])
def test_slot_counts_match_a_cluster_node(built, target: str, get_engine, engine_server) -> None:
    path, keys = built
    report = inspect_file(path, shards=5)
    spread = report.slots
    assert spread is not None and sum(spread.keys) == report.keys == len(keys)
    # assign_slots=False: the node takes exactly the slots it finds keys in, which is itself a check
    # (and start does not wait for a cluster state that a partial slot set never reaches)
    server = engine_server(get_engine(target), cluster=True, rdb=path, assign_slots=False)
    client = server.client()
    assert client.dbsize() == len(keys)
    pipe = client.pipeline(transaction=False)
    for slot in range(SLOTS):
        pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
    engine_counts = [int(n) for n in pipe.execute()]
    assert engine_counts == spread.keys  # every slot with keys, and every empty one
    info = client.execute_command("CLUSTER", "INFO").decode()
    assert f"cluster_slots_assigned:{SLOTS - spread.keys.count(0)}\r" in info
    # the shard totals are the engine's counts summed over each shard's ranges
    for row, shard in zip(spread.shard_rows(), SlotLayout.even(5).shards):
        assert row["slots"] == [list(r) for r in shard.ranges]
        assert row["keys"] == sum(sum(engine_counts[s:e + 1]) for s, e in shard.ranges)


def test_shard_totals_bytes_and_busiest_slots(built) -> None:
    path, keys = built
    report = inspect_file(path, shards=5)
    data = report.to_json()["slots"]
    layout = SlotLayout.even(5)
    want_keys = [0] * 5
    for key in keys:
        want_keys[layout.shard_of(key_slot(key))] += 1
    assert [r["keys"] for r in data["by_shard"]] == want_keys
    total_bytes = sum(row["bytes"] for row in report.by_type.values())
    assert data["bytes"] == sum(r["bytes"] for r in data["by_shard"]) == total_bytes
    assert sum(r["keys_pct"] for r in data["by_shard"]) == pytest.approx(100, abs=0.05)
    assert data["imbalance"]["keys"] == pytest.approx(max(want_keys) / (len(keys) / 5), abs=1e-3)
    busiest = data["busiest"]
    assert len(busiest) == 10
    assert busiest[0] == {"slot": key_slot(b"cart"), "keys": 60, "bytes": busiest[0]["bytes"]}
    assert busiest[1]["slot"] == key_slot(b"sess") and busiest[1]["keys"] == 25
    assert sum(report.size_buckets) == len(keys)
    blob = 1 + 1 + len(b"big:blob") + 3 + 6000  # type, key length, key, value length, value
    assert report.size_buckets[blob.bit_length()] >= 1


def test_default_inspect_unchanged_by_the_slot_pass() -> None:
    sample = ROOT / "fixtures" / "redis-7.0.rdb"
    fast, slow = inspect_file(sample), inspect_file(sample, shards=3)
    assert "slots" not in fast.to_json() and fast.slots is None and fast.size_buckets is None
    for name in ("keys", "expires", "by_type", "by_encoding", "biggest", "functions", "checksum"):
        assert getattr(fast, name) == getattr(slow, name), name
    assert slow.slots is not None and sum(slow.slots.keys) == fast.keys


def test_html_report_is_one_offline_document(built, tmp_path: Path) -> None:
    path, _ = built
    out = tmp_path / "report.html"
    result = _snaptool("inspect", str(path), "--html", str(out), "--shards", "4")
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert page.count("<svg") >= 5  # keys and bytes by type, sizes, keys and bytes per shard
    lowered = page.lower()
    for outside in ("http://", "https://", "<script", "src=", "href=", "@import", "url("):
        assert outside not in lowered, outside
    report = inspect_file(path, shards=4)
    assert page == render_html(report)  # the file holds what the API renders
    names = [row["key"] for row in report.biggest]
    assert BINARY_KEY.decode("utf-8", "backslashreplace") in names
    for name in names:
        shown = html.escape(name.replace("\x00", "\\x00").replace("\x01", "\\x01").replace("\x1b", "\\x1b"))
        assert shown in page, name
    assert html.escape('bin:\\xff\\xfe<&>"\\x00end') in page
    assert "<&>" not in page and "\x1b" not in page and "\x00" not in page
    assert "shard-0004" in page and "keys per shard" in page


def test_cli_slots_json_and_text(built, tmp_path: Path) -> None:
    path, keys = built
    page = tmp_path / "both.html"
    result = _snaptool("inspect", str(path), "--slots", "--shards", "5", "--json", "--html", str(page))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    slots = data["slots"]
    assert slots["shards"] == 5 and len(slots["by_shard"]) == 5 and slots["keys"] == len(keys)
    assert len(data["size_buckets"]) == 64 and page.is_file()
    plain = _snaptool("inspect", str(path), "--json")
    assert plain.returncode == 0 and "slots" not in json.loads(plain.stdout)
    text = _snaptool("inspect", str(path), "--slots")
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "even split over 3 shards" in out and "imbalance (max/mean)" in out and "busiest slots" in out
    assert _snaptool("inspect", str(path), "--slots", "--shards", "0").returncode == 2


def test_database_bytes_add_up_to_type_bytes_on_both_paths() -> None:
    """Runs and single records count the same thing: type+key+value, prefix opcodes excluded."""
    from pathlib import Path

    from snaptool.jobs.inspect import inspect_file
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "redis-6.2-lru.rdb"
    fast, slow = inspect_file(fixture), inspect_file(fixture, shards=3)
    for report in (fast, slow):
        assert sum(db.bytes for db in report.databases.values()) == sum(r["bytes"] for r in report.by_type.values())
    assert {db: s.bytes for db, s in fast.databases.items()} == {db: s.bytes for db, s in slow.databases.items()}
