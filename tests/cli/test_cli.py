"""The command line as users run it: real processes, exit codes, one-line errors, no partial files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snaptool.engines.discovery import find_engines
from snaptool.engines.server import EngineServer
from snaptool.rdb.reader import RdbReader

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SAMPLE = FIXTURES / "redis-7.0.rdb"


def snaptool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snaptool", *args], input=stdin, capture_output=True,
                          timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snaptool: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_inspect_json_counts_match_the_engine() -> None:
    meta = json.loads((FIXTURES / "redis-7.0.meta.json").read_text())
    result = snaptool("inspect", str(SAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["keys"] == meta["key_count"]
    assert report["version"] == 10 and report["checksum"] == "ok"
    assert sorted(report["functions"]) == sorted(f["name"] for f in meta["functions"])
    assert len(report["biggest"]) == 20


def test_inspect_reads_a_pipe() -> None:
    data = SAMPLE.read_bytes()
    piped = subprocess.run(f"cat {SAMPLE} | {sys.executable} -m snaptool inspect - --json", shell=True,
                           capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["size"] == len(data)


def test_corrupt_file_exits_2_with_offset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(SAMPLE.read_bytes()[:5000])
    line = assert_one_line_error(snaptool("inspect", str(bad)), 2, str(bad), "offset")
    assert "unexpected end of data" in line


def test_missing_file_exits_1(tmp_path: Path) -> None:
    assert_one_line_error(snaptool("inspect", str(tmp_path / "nope.rdb")), 1, "nope.rdb")


def test_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    assert_one_line_error(snaptool("convert", str(SAMPLE), "-o", str(tmp_path / "o.rdb"), "--target",
                                   "redis-9.9"), 1, "unknown target")
    assert not list(tmp_path.iterdir())


def test_failed_convert_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "in.rdb"
    bad.write_bytes(SAMPLE.read_bytes()[:-30])
    out = tmp_path / "out" / "o.rdb"
    out.parent.mkdir()
    assert_one_line_error(snaptool("convert", str(bad), "-o", str(out)), 2)
    assert not list(out.parent.iterdir())


def test_lossy_convert_exits_3_and_names_keys(tmp_path: Path) -> None:
    out = tmp_path / "o.rdb"
    result = snaptool("convert", str(SAMPLE), "-o", str(out), "--target", "redis-6.2")
    line = assert_one_line_error(result, 3, "functions", "--allow-lossy")
    assert "redis-6.2" in line
    assert not list(tmp_path.iterdir())
    ok = snaptool("convert", str(SAMPLE), "-o", str(out), "--target", "redis-6.2", "--allow-lossy", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["dropped"] == {"functions": 2}
    with RdbReader.open(out) as reader:
        assert sum(1 for _ in reader.records()) == json.loads(ok.stdout)["keys"]


def test_checksum_flag(tmp_path: Path) -> None:
    bad = tmp_path / "crc.rdb"
    data = bytearray(SAMPLE.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    assert_one_line_error(snaptool("digest", str(bad)), 2, "CRC-64 mismatch", "--no-verify-checksum")
    assert snaptool("digest", str(bad), "--no-verify-checksum").returncode == 0


def test_export_filters() -> None:
    result = snaptool("export", str(SAMPLE), "--db", "0", "--type", "hash", "--match", "hash:*")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert rows and all(r["type"] == "hash" and r["db"] == 0 and r["key"].startswith("hash:") for r in rows)


def _cli_for(server: EngineServer) -> str:
    """The client shipped beside the engine binary (redis-cli or valkey-cli)."""
    for name in ("redis-cli", "valkey-cli"):
        candidate = Path(server.engine.binary).with_name(name)
        if candidate.exists():
            return str(candidate)
    pytest.skip(f"no redis-cli beside {server.engine.binary}")


RESP_ENGINES = [e for e in find_engines() if e.target_name in ("redis-7.0", "valkey-8.1")]


@pytest.mark.parametrize("engine", RESP_ENGINES, ids=lambda e: e.target_name)
def test_resp_export_rebuilds_the_data(engine, tmp_path: Path) -> None:
    """`export --format resp | redis-cli --pipe` into an empty node gives the file's digest."""
    fixture = FIXTURES / f"{engine.target_name}.rdb"
    resp = snaptool("export", str(fixture), "--format", "resp")
    assert resp.returncode == 0, resp.stderr
    expected = snaptool("digest", str(fixture), "--engine", engine.target_name).stdout.decode().strip()
    with EngineServer(engine, config={"databases": "16"}) as server:
        cli = _cli_for(server)
        port = server.client().connection_pool.connection_kwargs["port"]
        piped = subprocess.run([cli, "-p", str(port), "--pipe"], input=resp.stdout, capture_output=True,
                               timeout=120)
        assert piped.returncode == 0, piped.stdout + piped.stderr
        assert b"errors: 0" in piped.stdout, piped.stdout
        assert server.client().execute_command("DEBUG", "DIGEST").decode() == expected


def test_engines_lists_what_is_installed() -> None:
    result = snaptool("engines", "--json")
    assert result.returncode == 0
    listed = json.loads(result.stdout)
    assert {e["name"] for e in listed} == {e.name for e in find_engines()}
    assert all(e["max_rdb_version"] >= 9 for e in listed)


def test_version_and_help() -> None:
    assert snaptool("--version").returncode == 0
    help_text = snaptool("--help").stdout.decode()
    for command in ("inspect", "export", "convert", "digest", "engines"):
        assert command in help_text
