"""Backups of RDB files into local and S3 repositories, and restore drills from them."""

from __future__ import annotations

import hashlib
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from snaptool.errors import RdbError, SnaptoolError
from snaptool.jobs.backup import BackupOptions, backup
from snaptool.jobs.digest import digest_file
from snaptool.jobs.drill import drill
from snaptool.jobs.gc import gc
from snaptool.jobs.inspect import inspect_file
from snaptool.storage.catalog import Catalog, file_path
from snaptool.storage.repository import Repository

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FILES = ["redis-6.2.rdb", "redis-7.0.rdb", "valkey-8.1.rdb"]


@pytest.fixture(params=["local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    if request.param == "local":
        return Repository.open(str(tmp_path / "repo"))
    return Repository.open(f"s3://{request.getfixturevalue('s3_bucket')}/backups")


@pytest.mark.parametrize("name", FILES)
def test_file_backup_records_what_the_file_holds(repo: Repository, name: str) -> None:
    source = FIXTURES / name
    manifest = backup(str(source), repo, BackupOptions(tags=("t1",), kind="automatic"))
    (entry,) = manifest.files
    data = source.read_bytes()
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and entry.size == len(data)
    assert entry.crc64 == data[-8:][::-1].hex()  # the file's own trailing CRC-64, little-endian
    assert entry.magic == data[:9].decode() and entry.name.startswith(manifest.id)
    report = inspect_file(source)
    assert {db: (s.keys, s.expires) for db, s in entry.databases.items()} == \
        {int(db): (s.keys, s.expires) for db, s in report.databases.items()}
    assert repo.read_bytes(file_path(manifest.id, entry.name)) == data
    assert entry.written_by and entry.written_by.split("-")[0] in name
    again = Catalog(repo).resolve("latest")
    assert again == manifest and again.kind == "automatic" and again.tags == ["t1"]


def test_digest_on_request_equals_the_offline_digest(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(str(FIXTURES / "redis-7.0.rdb"), repo, BackupOptions(digest=True))
    entry = manifest.files[0]
    assert entry.digest == digest_file(FIXTURES / "redis-7.0.rdb").digest
    assert entry.digest_engine


@pytest.mark.parametrize("name", FILES)
def test_drill_passes_and_writes_junit(repo: Repository, name: str) -> None:
    manifest = backup(str(FIXTURES / name), repo)
    report = drill(manifest.id, repo)
    assert report.ok, [c for c in report.checks if not c.ok]
    names = [c.name for c in report.checks]
    assert names[0] == "fetch and sha256" and names[-1] == "load and compare"
    suite = ET.fromstring(report.to_junit()).find("testsuite")
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == len(names)


def test_drill_names_a_corrupted_file(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(str(FIXTURES / "redis-7.0.rdb"), repo)
    stored = Path(repo.local_path(file_path(manifest.id, manifest.files[0].name)))
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    report = drill("latest", repo)
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert failed[0].name == "fetch and sha256" and manifest.files[0].name in failed[0].message
    assert "load and compare" not in [c.name for c in report.checks]  # nothing was loaded
    case = ET.fromstring(report.to_junit()).find("testsuite/testcase/failure")
    assert case is not None and "sha256" in case.get("message")


def test_drill_refuses_an_engine_that_cannot_load_it(tmp_path: Path, get_engine) -> None:
    get_engine("redis-6.2")
    repo = Repository.open(str(tmp_path / "repo"))
    backup(str(FIXTURES / "valkey-8.1.rdb"), repo)
    report = drill("latest", repo, engine="redis-6.2")
    (failed,) = [c for c in report.checks if not c.ok]
    assert failed.name == "engine" and "--target" in failed.message


def test_a_truncated_source_leaves_no_snapshot(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    data = (FIXTURES / "redis-7.0.rdb").read_bytes()
    bad = tmp_path / "cut.rdb"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RdbError) as info:
        backup(str(bad), repo)
    assert "cut.rdb" in str(info.value)
    assert Catalog(repo).list() == []  # not even an incomplete directory
    assert backup(str(FIXTURES / "redis-7.0.rdb"), repo).keys > 0  # the next backup works


def test_gc_removes_only_old_leftovers(tmp_path: Path) -> None:
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(str(FIXTURES / "redis-6.2.rdb"), repo)
    leftover = Path(repo.local_path("snapshots")) / (manifest.id[:-6] + "abcdef")
    shutil.copytree(Path(repo.local_path(f"snapshots/{manifest.id}")), leftover)
    (leftover / "manifest.json").unlink()
    assert gc(repo).kept_young == [leftover.name]  # it may be a backup still running
    report = gc(repo, min_age_seconds=0)
    assert report.would_remove == [leftover.name] and leftover.exists()  # dry run by default
    assert gc(repo, dry_run=False, min_age_seconds=0).removed == [leftover.name]
    assert not leftover.exists() and [m.id for m in Catalog(repo).complete()] == [manifest.id]


def test_backup_of_an_rdb_object_in_s3(s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    data = (FIXTURES / "valkey-8.1.rdb").read_bytes()
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="exports/dump.rdb", Body=data)
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(f"s3://{s3_bucket}/exports/dump.rdb", repo)
    assert manifest.source == {"url": f"s3://{s3_bucket}/exports/dump.rdb", "engine": manifest.files[0].written_by,
                               "type": "file"}
    assert manifest.files[0].sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(SnaptoolError, match="not found"):
        backup(f"s3://{s3_bucket}/exports/missing.rdb", repo)
