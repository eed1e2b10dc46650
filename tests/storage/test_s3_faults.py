"""S3 faults injected at the HTTP layer (a real proxy in front of moto's server): throttling, 500s
and dropped connections are retried; an upload that keeps failing leaves no snapshot behind."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import boto3
import pytest

from s3_support import FaultProxy, aws_environment, moto_server
from snaptool.jobs.backup import backup
from snaptool.jobs.drill import drill
from snaptool.storage.catalog import Catalog, file_path
from snaptool.storage.repository import Repository, RepositoryError, S3Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SAMPLE = FIXTURES / "redis-7.0.rdb"  # 78 KB: five 16 KiB parts
PART = 16 << 10


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server(S3_UPLOAD_PART_MIN_SIZE="1024") as url:
        yield url


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    p = FaultProxy(endpoint)
    yield p
    p.close()


@pytest.fixture
def bucket(endpoint: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    aws_environment(monkeypatch, proxy.url, tmp_path)  # every client goes through the proxy
    name = f"faults-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def _part(n: int):
    return lambda r: r.is_upload_part and r.query["partNumber"] == [str(n)]


def test_throttling_errors_and_dropped_connections_are_retried(bucket: str, proxy: FaultProxy) -> None:
    repo = Repository.open(f"s3://{bucket}/r", s3=S3Settings(part_size=PART))
    proxy.fail("503", lambda r: r.method == "POST" and "uploads" in r.query, times=2)  # CreateMultipartUpload
    proxy.fail("503", _part(1), times=3)
    proxy.fail("drop", _part(2), times=2)  # the connection dies halfway through the part's body
    proxy.fail("500", _part(4), times=2)
    proxy.fail("lost-reply", lambda r: r.is_complete)  # done, but the answer never arrives
    proxy.fail("500", lambda r: r.is_put and r.path.endswith("manifest.json"))
    manifest = backup(str(SAMPLE), repo)
    assert proxy.faults_left() == 0
    statuses = [s.status for s in proxy.traffic.seen]
    assert statuses.count(503) == 5 and statuses.count(500) == 3 and statuses.count("dropped") == 2
    assert "lost-reply" in statuses
    # verified through S3's checksums: nothing was read back
    assert not [s for s in proxy.traffic.seen if s.method == "GET" and s.path.endswith(".rdb")]
    assert repo.read_bytes(file_path(manifest.id, manifest.files[0].name)) == SAMPLE.read_bytes()
    assert Catalog(repo).resolve("latest").id == manifest.id


def test_reads_are_retried(bucket: str, proxy: FaultProxy) -> None:
    repo = Repository.open(f"s3://{bucket}/r")
    manifest = backup(str(SAMPLE), repo)
    proxy.fail("503", lambda r: r.method == "GET" and r.path.endswith(".rdb"), times=2)
    proxy.fail("500", lambda r: r.method == "GET" and r.path.endswith("manifest.json"), times=1)
    report = drill(manifest.id, repo)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert proxy.faults_left() == 0


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_an_upload_that_keeps_failing_leaves_no_snapshot(bucket: str, proxy: FaultProxy, fault: str) -> None:
    repo = Repository.open(f"s3://{bucket}/r", s3=S3Settings(part_size=PART, max_attempts=2))
    proxy.fail(fault, _part(3), times=100)
    with pytest.raises(RepositoryError) as info:
        backup(str(SAMPLE), repo)
    message = str(info.value)
    assert "\n" not in message and ".shard-0001.rdb (part 3)" in message
    assert ("SlowDown" in message) if fault == "503" else ("Connection" in message or "connection" in message)
    assert Catalog(repo).list() == []  # no manifest, and no leftovers either
    s3 = boto3.client("s3")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_the_command_line_reports_a_failing_store_in_one_line(bucket: str, proxy: FaultProxy,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the standard AWS setting is honoured
    proxy.fail("503", lambda r: r.method == "PUT", times=100)
    done = subprocess.run([sys.executable, "-m", "snaptool", "backup", str(SAMPLE), "--repo", f"s3://{bucket}/r"],
                          capture_output=True, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snaptool: error: "), err
    assert "SlowDown" in lines[0] or "reduce your request rate" in lines[0], err  # the lease is the first PUT
    puts = [s for s in proxy.traffic.seen if s.method == "PUT"]
    assert len(puts) == 2  # tried twice, as AWS_MAX_ATTEMPTS says
    proxy.clear()
    assert Catalog(Repository.open(f"s3://{bucket}/r")).list() == []
