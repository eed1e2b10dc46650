"""backup / snapshots / show / restore / drill / forget / gc as users run them, and how they fail."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from snaptool.rdb.builder import RdbBuilder
from snaptool.rdb.targets import parse_target
from disk_support import limit_file_size
from test_cli import FIXTURES, assert_one_line_error, snaptool
from tls_certs import make_certs, tls_server

SAMPLE = FIXTURES / "redis-7.0.rdb"


def test_the_whole_loop_from_the_command_line(tmp_path: Path, engine_server) -> None:
    repo = str(tmp_path / "repo")
    made = snaptool("backup", str(SAMPLE), "--repo", repo, "--tag", "ci", "--json")
    assert made.returncode == 0, made.stderr
    manifest = json.loads(made.stdout)
    listed = json.loads(snaptool("snapshots", "--repo", repo, "--json").stdout)
    assert [(e["id"], e["complete"]) for e in listed] == [(manifest["id"], True)]
    shown = snaptool("show", manifest["id"][:18], "--repo", repo)
    assert shown.returncode == 0 and manifest["files"][0]["sha256"][:16] in shown.stdout.decode()
    junit = tmp_path / "drill.xml"
    drilled = snaptool("drill", "--repo", repo, "--junit", str(junit))
    assert drilled.returncode == 0, drilled.stderr
    assert ET.parse(junit).getroot().get("failures") == "0"
    target = engine_server("redis-7.0")
    restored = snaptool("restore", "latest", "--repo", repo, "--to", target.url, "--json")
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["validation"]["ok"] and report["restored"] == target.client().dbsize() + \
        sum(int(v["keys"]) for k, v in target.client().info("keyspace").items() if k != "db0")
    again = snaptool("restore", "latest", "--repo", repo, "--to", target.url)
    assert_one_line_error(again, 1, "not empty", "nothing was changed")
    dry = snaptool("forget", manifest["id"], "--repo", repo, "--dry-run")
    assert b"would remove" in dry.stdout and Path(repo, "snapshots", manifest["id"]).exists()
    assert snaptool("forget", manifest["id"], "--repo", repo).returncode == 0
    assert json.loads(snaptool("snapshots", "--repo", repo, "--json").stdout) == []


def test_drill_of_a_corrupted_snapshot_exits_4(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    manifest = json.loads(snaptool("backup", str(SAMPLE), "--repo", str(repo), "--json").stdout)
    stored = repo / "snapshots" / manifest["id"] / manifest["files"][0]["name"]
    stored.write_bytes(stored.read_bytes()[:-100])
    junit = tmp_path / "drill.xml"
    result = snaptool("drill", "--repo", str(repo), "--junit", str(junit))
    assert result.returncode == 4 and manifest["files"][0]["name"] in result.stderr.decode()
    assert ET.parse(junit).getroot().get("failures") == "1"


def test_wrong_password_is_one_line_without_the_password(engine_server, tmp_path: Path) -> None:
    server = engine_server("redis-7.0", config={"requirepass": "right"})
    result = snaptool("backup", f"redis://:wrong-one@127.0.0.1:{server.port}", "--repo", str(tmp_path / "r"))
    line = assert_one_line_error(result, 1, "authentication", f"127.0.0.1:{server.port}")
    assert "wrong-one" not in line


def test_sigkill_mid_backup_leaves_an_incomplete_snapshot_that_gc_removes(tmp_path: Path) -> None:
    """The source is a pipe fed slowly, so the backup is surely mid-transfer when it is killed."""
    repo = str(tmp_path / "repo")
    fifo = tmp_path / "source.rdb"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "snaptool", "backup", str(fifo), "--repo", repo],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = SAMPLE.read_bytes()
    with open(fifo, "wb") as feed:
        feed.write(data[: len(data) // 2])
        feed.flush()
        deadline = time.monotonic() + 20
        while not list(Path(repo).glob("snapshots/*/*.part-*")):  # the upload has started
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    listed = snaptool("snapshots", "--repo", repo).stdout.decode()
    assert "INCOMPLETE" in listed
    assert snaptool("restore", "latest", "--repo", repo, "--to-dir", str(tmp_path / "x")).returncode == 1
    kept = snaptool("gc", "--repo", repo)  # younger than an hour: may still be running
    assert b"kept" in kept.stdout and Path(repo, "snapshots").iterdir()
    removed = snaptool("gc", "--repo", repo, "--apply", "--min-age", "0")
    assert b"removed" in removed.stdout and not list(Path(repo, "snapshots").iterdir())
    assert snaptool("backup", str(SAMPLE), "--repo", repo).returncode == 0


def test_a_write_failure_leaves_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = subprocess.run([sys.executable, "-m", "snaptool", "backup", str(SAMPLE), "--repo", str(repo)],
                            capture_output=True, preexec_fn=limit_file_size(), timeout=120)
    assert_one_line_error(result, 1, "File too large")
    assert not list(repo.glob("snapshots/*"))  # no partial file, no incomplete directory


def test_a_full_disk_leaves_nothing_and_the_next_backup_works(full_disk: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.rdb"
    with open(big, "wb") as out:
        builder = RdbBuilder(out, parse_target("redis-7.0"))
        for i in range(20000):
            builder.add(f"key:{i}".encode(), "string", os.urandom(100))
        builder.finish()
    result = snaptool("backup", str(big), "--repo", str(full_disk / "repo"))
    assert_one_line_error(result, 1, "No space left on device")
    assert not list((full_disk / "repo").glob("snapshots/*"))
    assert snaptool("backup", str(SAMPLE), "--repo", str(full_disk / "repo")).returncode == 0


def test_tls_and_an_acl_user_end_to_end(engine_server, get_engine, tmp_path: Path) -> None:
    """Back up over TLS as a least-privilege ACL user, restore over TLS, validated."""
    engine = get_engine("redis-7.0")
    certs = make_certs(tmp_path / "certs")
    source, source_tls = tls_server(engine_server, engine, certs)
    admin = source.client()
    admin.execute_command("ACL", "SETUSER", "backup", "on", ">pw", "-@all", "+psync", "+replconf", "+info")
    for i in range(1000):
        admin.set(f"k{i}", i)
    repo = str(tmp_path / "repo")
    made = snaptool("backup", f"rediss://backup:pw@127.0.0.1:{source_tls}", "--tls-ca", certs["ca"],
                    "--repo", repo, "--json")
    assert made.returncode == 0, made.stderr
    manifest = json.loads(made.stdout)
    assert manifest["source"]["url"] == f"rediss://backup@127.0.0.1:{source_tls}" and manifest["files"][0]["databases"]["0"]["keys"] == 1000
    target, target_tls = tls_server(engine_server, engine, certs)
    done = snaptool("restore", "latest", "--repo", repo, "--to", f"rediss://127.0.0.1:{target_tls}",
                    "--tls-ca", certs["ca"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["validation"]["ok"] and target.client().dbsize() == 1000
    wrong_ca = make_certs(tmp_path / "other")["ca"]
    refused = snaptool("backup", f"rediss://backup:pw@127.0.0.1:{source_tls}", "--tls-ca", wrong_ca, "--repo", repo)
    assert_one_line_error(refused, 1, "certificate verify failed", f"127.0.0.1:{source_tls}")


def test_snapshots_lists_and_relabels_for_retention(tmp_path: Path) -> None:
    from snaptool.storage.catalog import Catalog
    from snaptool.storage.repository import Repository

    repo = str(tmp_path / "repo")
    made = json.loads(snaptool("backup", str(SAMPLE), "--repo", repo, "--kind", "automatic", "--json").stdout)
    listed = json.loads(snaptool("snapshots", "--repo", repo, "--json").stdout)
    assert [(e["id"], e["manifest"]["kind"]) for e in listed] == [(made["id"], "automatic")]
    promoted = snaptool("snapshots", "promote", made["id"][:20], "--repo", repo)
    assert promoted.returncode == 0 and promoted.stdout.decode().strip() == \
        f"{made['id']}: now manual (kept until forgotten)"
    pinned = json.loads(snaptool("snapshots", "pin", "latest", "--repo", repo, "--json").stdout)
    assert pinned == {"id": made["id"], "kind": "manual", "pinned": True, "changed": True}
    stored = Catalog(Repository.open(repo)).manifest(made["id"])
    assert (stored.kind, stored.pinned) == ("manual", True)
    assert b"unpinned" in snaptool("snapshots", "unpin", made["id"], "--repo", repo).stdout
    assert not Catalog(Repository.open(repo)).manifest(made["id"]).pinned
    assert b"no such command 'promote'" in snaptool("promote", made["id"], "--repo", repo).stderr.lower()
    misplaced = snaptool("snapshots", "--repo", repo, "pin", made["id"])  # would relabel in ./snaptool-repo
    assert misplaced.returncode == 2 and b"give --repo after the command" in misplaced.stderr
    assert not Catalog(Repository.open(repo)).manifest(made["id"]).pinned
    assert_one_line_error(snaptool("snapshots", "promote", "nope", "--repo", repo), 1, "no complete snapshot 'nope'")


def test_backup_pin_is_shown_and_kept_by_prune(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    made = json.loads(snaptool("backup", str(SAMPLE), "--repo", repo, "--kind", "automatic", "--pin",
                               "--json").stdout)
    assert made["pinned"] is True
    listed = snaptool("snapshots", "--repo", repo)
    assert f"{made['id']}  automatic*" in listed.stdout.decode() and b"* pinned" in listed.stderr
    assert b"pinned: never removed by prune" in snaptool("show", "latest", "--repo", repo).stdout
    pruned = snaptool("prune", "--retention-days", "0", "--repo", repo, "--json")
    assert pruned.returncode == 0, pruned.stderr
    (decision,) = json.loads(pruned.stdout)["decisions"]
    assert decision["outcome"] == "kept" and "pinned" in decision["reasons"]


def test_a_drill_that_fails_before_choosing_an_engine_says_so_plainly(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    manifest = json.loads(snaptool("backup", str(SAMPLE), "--repo", str(repo), "--json").stdout)
    stored = repo / "snapshots" / manifest["id"] / manifest["files"][0]["name"]
    stored.write_bytes(b"X" + stored.read_bytes()[1:])  # fails the sha256, before any engine is chosen
    result = snaptool("drill", "--repo", str(repo))
    assert result.returncode == 4
    assert f"drill {manifest['id']}: FAILED".encode() in result.stdout


# Holds the repository's exclusive lock (as a prune or gc does) until told to let go on stdin.
_HOLD = ("import sys; from snaptool.storage.lock import exclusive_lock; from snaptool.storage.repository import "
         "Repository\nwith exclusive_lock(Repository.open(sys.argv[1]), sys.argv[2]) as lease:\n"
         "    print(lease.info.name, flush=True); sys.stdin.readline()")


def _holder(repo: str, purpose: str) -> tuple[subprocess.Popen, str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, repo, purpose], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    return holder, holder.stdout.readline().strip()


def test_backup_waits_for_a_prune_lock_until_another_process_releases_it(tmp_path: Path) -> None:
    from snaptool.storage.catalog import Catalog
    from snaptool.storage.lock import list_locks
    from snaptool.storage.repository import Repository

    repo = str(tmp_path / "repo")
    holder, lease = _holder(repo, "prune")
    backup = subprocess.Popen([sys.executable, "-m", "snaptool", "backup", str(SAMPLE), "--repo", repo,
                               "--lock-wait", "5m", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    assert backup.stderr is not None and holder.stdin is not None
    said = backup.stderr.readline()  # the backup says it waits, and for whom, before the lock is let go
    assert said.startswith(f"snaptool: waiting up to 5m for the repository lock: exclusive lock locks/{lease}: "
                           f"prune (pid {holder.pid} on "), said
    assert not Catalog(Repository.open(repo)).list()  # nothing written while waiting
    holder.stdin.write("\n")
    holder.stdin.close()
    assert holder.wait() == 0
    out, err = backup.communicate(timeout=300)
    assert backup.returncode == 0, err
    manifest = json.loads(out)
    meta = json.loads((FIXTURES / "redis-7.0.meta.json").read_text())
    (stored,) = manifest["files"]
    assert sum(db["keys"] for db in stored["databases"].values()) == meta["key_count"]
    assert stored["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert [m.id for m in Catalog(Repository.open(repo)).complete()] == [manifest["id"]]
    assert list_locks(Repository.open(repo)) == []


def test_backup_gives_up_after_its_lock_wait_in_one_line_leaving_nothing(tmp_path: Path) -> None:
    from snaptool.storage.lock import list_locks
    from snaptool.storage.repository import Repository

    repo = str(tmp_path / "repo")
    holder, lease = _holder(repo, "gc")
    try:
        result = snaptool("backup", str(SAMPLE), "--repo", repo, "--lock-wait", "1s")
        err = result.stderr.decode()
        assert result.returncode == 1 and "Traceback" not in err, err
        waiting, error = err.strip().splitlines()
        assert waiting.startswith(f"snaptool: waiting up to 1s for the repository lock: exclusive lock locks/{lease}")
        assert error.startswith(f"snaptool: error: repository {repo} is locked: exclusive lock locks/{lease}: gc (pid "
                                f"{holder.pid} on ") and error.endswith("(still locked after waiting 1s)")
        assert not (tmp_path / "repo" / "snapshots").exists()
        assert [x.name for x in list_locks(Repository.open(repo))] == [lease]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    assert_one_line_error(snaptool("backup", str(SAMPLE), "--repo", repo, "--lock-wait", "5x"), 1,
                          "--lock-wait '5x': give seconds or a duration")
    assert not (tmp_path / "repo" / "snapshots").exists()


def test_an_s3_endpoint_that_cannot_be_reached_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    empty = tmp_path / "aws-config"
    empty.write_text("")
    for name, value in {"AWS_ENDPOINT_URL": dead, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                        "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1", "AWS_CONFIG_FILE": str(empty),
                        "AWS_SHARED_CREDENTIALS_FILE": str(empty)}.items():
        monkeypatch.setenv(name, value)
    repo = "s3://nowhere/redis"
    for args in (["backup", str(SAMPLE)], ["snapshots"], ["restore", "latest", "--to-dir", str(tmp_path / "o")],
                 ["prune", "--keep-last", "1"]):
        assert_one_line_error(snaptool(*args, "--repo", repo), 1, "Could not connect to the endpoint URL")
