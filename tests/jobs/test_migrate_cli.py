"""`snaptool migrate memcached` as a process: exit codes, one-line errors, the report, nothing half-written.

Real memcached servers and engine nodes, started here; the target is read back with redis-py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from snaptool.engines.memcached_server import MemcachedServer, find_memcached

pytestmark = pytest.mark.skipif(find_memcached() is None, reason="memcached not installed")

ROOT = Path(__file__).resolve().parents[2]
ENGINE = "redis-7.0"
_BOOT = "import sys; from snaptool.cli.main import main; sys.exit(main(sys.argv[1:]))"


def snaptool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BOOT, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=240)


def load(mc: MemcachedServer, count: int, flags: int = 0, prefix: bytes = b"k:") -> None:
    with socket.create_connection((mc.host, mc.port)) as sock:
        sock.sendall(b"".join(b"set %b%d %d 0 %d noreply\r\n%b\r\n" % (prefix, i, flags, len(b"v%d" % i), b"v%d" % i)
                              for i in range(count)) + b"version\r\n")
        data = b""
        while not data.endswith(b"\r\n"):
            data += sock.recv(100)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("snaptool: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_into_a_node_with_the_report(engine_server) -> None:
    with MemcachedServer() as mc:
        load(mc, 5000)
        target = engine_server(ENGINE)
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url)
        assert result.returncode == 0, result.stderr
        assert "verified equal" in result.stdout and "5,000" in result.stdout
        client = target.client()
        assert client.dbsize() == 5000 and client.get(b"k:4999") == b"v4999"
        # again, as JSON: the target now holds keys, so --replace is needed
        refused = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url, "--json")
        assert refused.returncode == 1 and "--replace" in one_line_error(refused)
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url, "--replace", "--json")
        report = json.loads(result.stdout)
        assert report["ok"] and report["listed"] == 5000 and report["check"]["equal"] == 5000


def test_flags_stop_the_run_with_the_inventory(engine_server, tmp_path) -> None:
    with MemcachedServer() as mc:
        load(mc, 300, flags=2, prefix=b"num:")
        load(mc, 700)
        target = engine_server(ENGINE)
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url)
        assert result.returncode == 3
        assert "num:" in result.stderr and "300" in result.stderr  # the inventory, per prefix
        assert "--flags ignore" in one_line_error(result)
        assert target.client().dbsize() == 0
        out = tmp_path / "out"
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to-dir", str(out))
        assert result.returncode == 3
        assert not out.exists()  # no file, not even a part
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url, "--flags", "hash:mcf")
        assert result.returncode == 0, result.stderr
        assert target.client().hlen("mcf") == 300 and target.client().hget("mcf", "num:7") == b"2"


def test_refusals_and_bad_input_are_one_line(engine_server, tmp_path) -> None:
    with MemcachedServer(["-o", "no_lru_crawler"]) as mc:
        target = engine_server(ENGINE)
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url)
        assert result.returncode == 1 and "dual-write" in one_line_error(result)
    with MemcachedServer() as mc:  # Debian's 1.6.18 has no mgdump: refused before any command is sent
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to-dir", str(tmp_path / "no"),
                          "--enumerate", "mgdump")
        assert result.returncode == 1 and "mgdump needs memcached 1.6.19" in one_line_error(result)
        assert not (tmp_path / "no").exists()
    cases = [
        (["--from", "redis://h:1", "--to-dir", str(tmp_path)], "invalid memcached address"),
        (["--from", "127.0.0.1:1", "--to-dir", str(tmp_path), "--flags", "keep"], "--flags"),
        (["--from", "127.0.0.1:1"], "say where the keys go"),
        (["--from", "127.0.0.1:1", "--to-dir", str(tmp_path), "--ring", "consistent"], "--ring 'consistent'"),
        (["--from", "127.0.0.1:1", "--to-dir", str(tmp_path), "--ring", "ketama:1,2"], "2 weight(s) for 1"),
        (["--from", "127.0.0.1:1", "--to-dir", str(tmp_path), "--enumerate", "mgdump", "--fetch", "gets"],
         "--fetch meta"),
        (["--from", "127.0.0.1:1", "--to-dir", str(tmp_path), "--dump-silence", "0"], "--dump-silence"),
    ]
    for args, message in cases:
        result = snaptool("migrate", "memcached", *args)
        assert result.returncode == 2 and message in one_line_error(result)
    result = snaptool("migrate", "memcached", "--from", "127.0.0.1:1", "--to-dir", str(tmp_path))
    assert result.returncode == 1 and "cannot reach memcached at 127.0.0.1:1" in one_line_error(result)


def test_a_sasl_only_server_is_one_line_with_the_reason(engine_server, tmp_path, monkeypatch) -> None:
    (tmp_path / "memcached.conf").write_text("mech_list: plain\n")  # memcached -S starts only with one
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    with MemcachedServer(["-S"]) as mc:
        target = engine_server(ENGINE)
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url)
        line = one_line_error(result)
        assert result.returncode == 1 and "binary protocol" in line and "SASL" in line and "dual-write" in line
        assert target.client().dbsize() == 0
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to-dir", str(tmp_path / "out"))
        assert result.returncode == 1 and "dual-write" in one_line_error(result)
        assert not (tmp_path / "out").exists()


def test_a_target_that_loses_keys_fails_with_the_table(engine_server) -> None:
    with MemcachedServer() as mc:
        load(mc, 30000)
        # a target that evicts what it was given: the check must notice, whatever the writes said
        target = engine_server(ENGINE, config={"maxmemory": "2mb", "maxmemory-policy": "allkeys-random"})
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to", target.url)
        assert result.returncode == 4
        held = target.client().dbsize()
        assert held < 30000
        assert "missing" in result.stderr and "LOST" in result.stderr
        assert "migration lost keys" in one_line_error(result)


def test_into_a_file_and_a_dry_run(tmp_path) -> None:
    with MemcachedServer() as mc:
        load(mc, 2000)
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--dry-run", "--json")
        report = json.loads(result.stdout)
        assert result.returncode == 0 and report["listed"] == 2000 and report["written"] == 0
        result = snaptool("migrate", "memcached", "--from", mc.endpoint, "--to-dir", str(tmp_path / "seed"),
                          "--target", "redis-7.0")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "seed" / "dump.rdb").read_bytes()[:9] == b"REDIS0010"
        inspect = subprocess.run([sys.executable, "-m", "snaptool", "inspect", str(tmp_path / "seed" / "dump.rdb"),
                                  "--json"], capture_output=True, text=True, cwd=ROOT)
        assert json.loads(inspect.stdout)["keys"] == 2000


def test_the_report_says_when_a_listing_ended_in_a_silence() -> None:
    """Releases before 1.5.4 print no END: the report says the listing may be incomplete."""
    from snaptool.cli.migrate import table
    from snaptool.jobs.migrate_memcached import MigrationReport, SourceReport

    source = SourceReport("mc:11211", "1.5.3", "metadump all", "gets", listed=10, read=10)
    assert "inferred from a silence" not in table(MigrationReport([source], "redis://x", "ignore"))
    source.end_inferred = True
    text = table(MigrationReport([source], "redis://x", "ignore"))
    assert "the end was inferred from a silence" in text and "may be incomplete" in text
    assert MigrationReport([source], "redis://x", "ignore").to_json()["sources"][0]["end_inferred"] is True
