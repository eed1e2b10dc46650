"""`copy` between repositories on moto's S3 server over HTTP: server-side across regions and
accounts (no snapshot bytes through the tool, measured at a proxy), streamed where the destination
cannot read the source, multipart part copies, resuming an interrupted copy, and restore and drill
from the copy."""

from __future__ import annotations

import configparser
import hashlib
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import boto3
import pytest

from s3_support import FaultProxy, assume_account, aws_environment, moto_server
from snaptool.jobs.copy import CopyError, CopyOptions, copy_snapshot
from snaptool.jobs.drill import drill
from snaptool.jobs.gc import gc
from snaptool.jobs.ingest import ingest
from snaptool.jobs.restore import RestoreOptions, restore
from snaptool.jobs.split import split
from snaptool.jobs.backup import backup
from snaptool.rdb.slots import SlotLayout
from snaptool.storage.catalog import Catalog, SnapshotNotFound, file_path, shard_file_name
from snaptool.storage.lock import LockedError, list_locks
from snaptool.storage.manifest import Manifest, new_snapshot_id
from snaptool.storage.repository import Repository, RepositoryError, S3Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SAMPLE = FIXTURES / "redis-7.0.rdb"
OTHER_ACCOUNT = "222222222222"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server(S3_UPLOAD_PART_MIN_SIZE="1024") as url:
        yield url


@pytest.fixture
def proxy(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FaultProxy]:
    p = FaultProxy(endpoint)
    aws_environment(monkeypatch, p.url, tmp_path)  # every S3 request of the test goes through it
    yield p
    p.close()


def _bucket(prefix: str, region: str = "us-east-1", **credentials: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", region_name=region, **credentials)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def sharded_snapshot(repo: Repository, work: Path, shards: int = 3) -> Manifest:
    """A committed 3-shard snapshot of the sample data (split by slot, as a cluster backup holds it)."""
    report = split([str(SAMPLE)], work / "shards", SlotLayout.even(shards), db_map={1: 0, 5: 0}, on_duplicate="first")
    sid = new_snapshot_id("cluster-sample")
    files = []
    for index, shard in enumerate(report.shards, 1):
        path = work / "shards" / shard.file
        with open(path, "rb") as f:
            entry = ingest(f, repo, sid, shard_file_name(sid, index), where=str(path), expected_size=path.stat().st_size)
        entry.shard, entry.slots, entry.role = shard.name, shard.slots, "primary"
        files.append(entry)
    manifest = Manifest(id=sid, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), kind="manual",
                        source={"url": "redis://sample:7000", "type": "cluster"}, files=files)
    Catalog(repo).commit(manifest)
    return manifest


def _rdb_traffic(proxy: FaultProxy) -> int:
    """Snapshot bytes on the wire: RDB objects read (GET bodies) and written (PUT bodies; a copy
    request has none, and its answer is a small XML document)."""
    return sum(s.down if s.method == "GET" else s.up for s in proxy.traffic.seen if s.path.endswith(".rdb"))


def test_server_side_copy_across_regions_moves_no_snapshot_bytes(proxy: FaultProxy, tmp_path: Path) -> None:
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    dest_bucket = _bucket("dst", "eu-west-1")
    dest = Repository.open(f"s3://{dest_bucket}/copies", s3=S3Settings(region="eu-west-1"))
    manifest = sharded_snapshot(source, tmp_path)
    proxy.clear()
    report = copy_snapshot(manifest.id[:20], source, dest)
    assert report.server_side and report.manifest == "copied"
    assert [(f.action, f.verified_by) for f in report.files] == [("server-copy", "s3-sha256")] * 3
    assert report.bytes_read == report.bytes_written == 0
    assert _rdb_traffic(proxy) == 0  # measured on the wire: not one snapshot byte through the tool
    wire = proxy.traffic.up + proxy.traffic.down
    assert wire < 40_000 < manifest.size  # the manifest (read, written) and small XML answers only
    assert boto3.client("s3").get_bucket_location(Bucket=dest_bucket)["LocationConstraint"] == "eu-west-1"
    assert Catalog(dest).resolve("latest") == manifest
    result = drill("latest", dest)  # a 3-node local cluster loads the copied files and compares every key
    assert result.ok, [c for c in result.checks if not c.ok]


def test_copy_into_another_account(proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source_bucket = _bucket("src")
    source = Repository.open(f"s3://{source_bucket}/redis")
    manifest = backup(str(SAMPLE), source)
    other = assume_account(proxy.url, OTHER_ACCOUNT)  # the destination account's own credentials
    credentials = tmp_path / "credentials"
    config = configparser.ConfigParser()
    config["dr"] = {k: v for k, v in other.items()}
    with open(credentials, "w") as f:
        config.write(f)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    dest_bucket = _bucket("dr", "eu-west-1", **other)
    settings = S3Settings(profile="dr", region="eu-west-1", acl="bucket-owner-full-control",
                          expected_bucket_owner=OTHER_ACCOUNT)
    dest = Repository.open(f"s3://{dest_bucket}/redis", s3=settings)
    proxy.clear()
    report = copy_snapshot("latest", source, dest, CopyOptions(expected_source_owner="123456789012"))
    assert report.server_side and report.files[0].action == "server-copy"
    copies = [s for s in proxy.traffic.seen if s.method == "PUT" and "x-amz-copy-source" in s.headers]
    assert copies and all(s.headers["x-amz-acl"] == "bucket-owner-full-control"
                          and s.headers["x-amz-expected-bucket-owner"] == OTHER_ACCOUNT
                          and s.headers["x-amz-source-expected-bucket-owner"] == "123456789012" for s in copies)
    put = next(s for s in proxy.traffic.seen if s.method == "PUT" and s.path.endswith("manifest.json"))
    assert put.headers["x-amz-acl"] == "bucket-owner-full-control"
    identity = boto3.client("sts", **other).get_caller_identity()
    assert identity["Account"] == OTHER_ACCOUNT
    out = tmp_path / "restored"
    restored = restore(manifest.id, dest, RestoreOptions(to_dir=str(out)))  # validated on a local engine
    assert restored.validation.ok
    assert (out / "dump.rdb").read_bytes() == SAMPLE.read_bytes()


def test_streamed_copy_when_the_destination_cannot_read_the_source(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    with moto_server(MOTO_S3_ALLOW_CROSSACCOUNT_ACCESS="false") as isolated:
        proxy = FaultProxy(isolated)
        try:
            aws_environment(monkeypatch, proxy.url, tmp_path)
            source = Repository.open(f"s3://{_bucket('src')}/redis")
            manifest = sharded_snapshot(source, tmp_path)
            other = assume_account(proxy.url, OTHER_ACCOUNT)
            dest_settings = S3Settings(access_key_id=other["aws_access_key_id"],
                                       secret_access_key=other["aws_secret_access_key"],
                                       session_token=other["aws_session_token"])
            dest = Repository.open(f"s3://{_bucket('dst', **other)}/r", s3=dest_settings)
            with pytest.raises(CopyError, match="cannot read s3://.*grant them s3:GetObject"):
                copy_snapshot("latest", source, dest, CopyOptions(mode="server"))
            proxy.clear()
            report = copy_snapshot("latest", source, dest)
            assert not report.server_side
            assert {(f.action, f.verified_by) for f in report.files} == {("streamed", "sha256")}
            assert report.bytes_read == report.bytes_written == manifest.size
            assert _rdb_traffic(proxy) >= 2 * manifest.size  # down from the source, up to the destination
            assert Catalog(dest).resolve("latest") == manifest
        finally:
            proxy.close()


def test_part_copies_above_the_threshold(proxy: FaultProxy, tmp_path: Path) -> None:
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    dest = Repository.open(f"s3://{_bucket('dst', 'ap-southeast-2')}/redis", s3=S3Settings(region="ap-southeast-2"))
    manifest = backup(str(SAMPLE), source)
    proxy.clear()
    options = CopyOptions(multipart_threshold=20 << 10, part_size=16 << 10)
    report = copy_snapshot("latest", source, dest, options)
    (copied,) = report.files
    assert (copied.action, copied.verified_by) == ("server-part-copy", "reread")
    part_copies = [s for s in proxy.traffic.seen if s.method == "PUT" and "partNumber" in s.query]
    assert len(part_copies) == -(-manifest.size // (16 << 10)) and all(s.up == 0 for s in part_copies)
    # S3 keeps no digest of the whole object for a part copy: it was read back (down only)
    assert copied.bytes_read == manifest.size and report.bytes_written == 0
    assert dest.read_bytes(file_path(manifest.id, copied.name)) == SAMPLE.read_bytes()
    again = copy_snapshot("latest", source, dest, options)  # nothing left to do: checked, not copied
    assert again.manifest == "already there" and again.files[0].action == "already there"


def test_throttled_and_failing_copies_inside_s3_are_retried(proxy: FaultProxy, tmp_path: Path) -> None:
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    dest = Repository.open(f"s3://{_bucket('dst', 'eu-west-1')}/redis", s3=S3Settings(region="eu-west-1"))
    sharded = sharded_snapshot(source, tmp_path)
    proxy.clear()
    proxy.fail("503", lambda r: r.is_copy, times=3)  # SlowDown on CopyObject
    proxy.fail("500", lambda r: r.is_copy and r.path.endswith(sharded.files[2].name), times=1)
    report = copy_snapshot(sharded.id, source, dest)
    assert proxy.faults_left() == 0 and {f.action for f in report.files} == {"server-copy"}
    statuses = [s.status for s in proxy.traffic.seen if s.method == "PUT"]
    assert statuses.count(503) == 3 and statuses.count(500) == 1
    single = backup(str(SAMPLE), source)
    proxy.clear()
    proxy.fail("503", lambda r: r.is_part_copy and r.query["partNumber"] == ["2"], times=2)
    proxy.fail("500", lambda r: r.is_complete, times=1)
    proxy.fail("503", lambda r: r.method == "POST" and "uploads" in r.query, times=1)
    report = copy_snapshot(single.id, source, dest, CopyOptions(multipart_threshold=20 << 10, part_size=16 << 10))
    assert proxy.faults_left() == 0 and report.files[0].action == "server-part-copy"
    bucket = dest.bucket_key("x")[0]
    assert boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # none left open
    for manifest in (sharded, single):
        assert Catalog(dest).resolve(manifest.id) == manifest
        result = drill(manifest.id, dest)
        assert result.ok, [c for c in result.checks if not c.ok]


def test_an_interrupted_copy_resumes_and_skips_finished_files(proxy: FaultProxy, tmp_path: Path) -> None:
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    dest = Repository.open(f"s3://{_bucket('dst', 'eu-west-1')}/redis", s3=S3Settings(region="eu-west-1",
                                                                                      max_attempts=2))
    manifest = sharded_snapshot(source, tmp_path)
    second = manifest.files[1].name
    proxy.fail("500", lambda r: r.is_copy and r.path.endswith(second), times=100)
    with pytest.raises(RepositoryError, match="InternalError"):
        copy_snapshot("latest", source, dest)
    (leftover,) = Catalog(dest).list()
    assert not leftover.complete and [n for n, _ in leftover.files] == [manifest.files[0].name]
    with pytest.raises(SnapshotNotFound):
        Catalog(dest).resolve("latest")
    proxy.clear()
    report = copy_snapshot("latest", source, dest)
    assert [f.action for f in report.files] == ["already there", "server-copy", "server-copy"]
    assert report.files[0].verified_by == "s3-sha256" and report.manifest == "copied"
    proxy.clear()
    again = copy_snapshot("latest", source, dest)
    assert {f.action for f in again.files} == {"already there"} and again.manifest == "already there"
    puts = [s.path for s in proxy.traffic.seen if s.method == "PUT"]
    posts = [s.query for s in proxy.traffic.seen if s.method == "POST"]
    assert len(puts) == 1 and "/locks/shared-" in puts[0] and posts == ["delete"]  # only the copy's lease


def test_gc_cannot_run_on_the_destination_while_a_copy_writes_it(proxy: FaultProxy, tmp_path: Path) -> None:
    """The copy holds a shared lease: gc --apply (exclusive) is refused until the manifest is in."""
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    dest = Repository.open(f"s3://{_bucket('dst', 'eu-west-1')}/redis", s3=S3Settings(region="eu-west-1"))
    manifest = sharded_snapshot(source, tmp_path)
    refused: list[str] = []

    def after_each_file(name: str, done: int, total: int) -> None:
        if refused:
            return
        (lease,) = list_locks(dest)
        assert lease.kind == "shared" and lease.purpose == "copy"
        with pytest.raises(LockedError, match="copy") as info:
            gc(dest, dry_run=False, min_age_seconds=0)
        refused.append(str(info.value))

    report = copy_snapshot("latest", source, dest, progress=after_each_file)
    assert len(refused) == 1 and "gc needs an exclusive lock" in refused[0]
    assert [f.name for f in report.files] == [f.name for f in manifest.files] and report.manifest == "copied"
    for entry in manifest.files:  # every file still there, as the manifest says
        assert dest.head(file_path(manifest.id, entry.name)).size == entry.size
    assert Catalog(dest).resolve("latest") == manifest and list_locks(dest) == []
    result = drill("latest", dest)
    assert result.ok, [c for c in result.checks if not c.ok]


def test_a_file_removed_before_the_manifest_fails_the_copy(proxy: FaultProxy, tmp_path: Path) -> None:
    """Something that ignores the lease removes a copied file: the copy fails and writes no manifest."""
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    dest = Repository.open(f"s3://{_bucket('dst')}/redis")
    manifest = sharded_snapshot(source, tmp_path)
    first, last = manifest.files[0].name, manifest.files[-1].name

    def remove_the_first(name: str, done: int, total: int) -> None:
        if name == last and done == total:
            bucket, key = dest.bucket_key(file_path(manifest.id, first))
            boto3.client("s3").delete_object(Bucket=bucket, Key=key)

    with pytest.raises(CopyError) as info:
        copy_snapshot("latest", source, dest, progress=remove_the_first)
    assert str(info.value) == (f"{dest.where(file_path(manifest.id, first))} is gone since it was copied; "
                               "no manifest was written (run the copy again)")
    assert dest.head(file_path(manifest.id, "manifest.json")) is None
    (leftover,) = Catalog(dest).list()
    assert not leftover.complete and list_locks(dest) == []
    report = copy_snapshot("latest", source, dest)  # the rerun puts it back
    assert [f.action for f in report.files] == ["server-copy", "already there", "already there"]
    assert Catalog(dest).resolve("latest") == manifest


def test_a_streamed_upload_interrupted_midway_resumes(proxy: FaultProxy, tmp_path: Path) -> None:
    """Local → S3 in 16 KiB parts; the second file's upload dies; the rerun trusts the first by
    the digest it was stored with and sends only what is missing."""
    local = Repository.open(str(tmp_path / "local"))
    manifest = sharded_snapshot(local, tmp_path)
    dest = Repository.open(f"s3://{_bucket('dst')}/redis", s3=S3Settings(part_size=16 << 10, max_attempts=2))
    second = manifest.files[1].name
    proxy.fail("drop", lambda r: r.is_upload_part and r.path.endswith(second), times=100)
    with pytest.raises(RepositoryError, match=second):
        copy_snapshot("latest", local, dest)
    proxy.clear()
    report = copy_snapshot("latest", local, dest)
    assert [(f.action, f.verified_by) for f in report.files] == \
        [("already there", "metadata"), ("streamed", "sha256"), ("streamed", "sha256")]
    assert report.bytes_written == manifest.files[1].size + manifest.files[2].size
    back = Repository.open(str(tmp_path / "back"))
    home = copy_snapshot("latest", dest, back)  # and back down to a directory
    assert home.bytes_read == manifest.size and not home.server_side
    for entry in manifest.files:
        local_file = back.local_path(file_path(manifest.id, entry.name))
        assert hashlib.sha256(Path(local_file).read_bytes()).hexdigest() == entry.sha256


def test_a_source_file_that_changed_is_not_copied(proxy: FaultProxy, tmp_path: Path) -> None:
    source_bucket = _bucket("src")
    source = Repository.open(f"s3://{source_bucket}/redis")
    manifest = backup(str(SAMPLE), source)
    bucket, key = source.bucket_key(file_path(manifest.id, manifest.files[0].name))
    damaged = bytearray(SAMPLE.read_bytes())
    damaged[1000] ^= 0xFF
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
    for mode in ("server", "stream"):
        dest = Repository.open(f"s3://{_bucket('dst')}/redis")
        with pytest.raises(RepositoryError, match="not verified|sha256") as info:
            copy_snapshot("latest", source, dest, CopyOptions(mode=mode))
        assert "\n" not in str(info.value)
        assert dest.head(file_path(manifest.id, manifest.files[0].name)) is None
        assert Catalog(dest).list() == []


def test_a_different_snapshot_under_the_same_id_is_refused(proxy: FaultProxy, tmp_path: Path) -> None:
    source = Repository.open(str(tmp_path / "a"))
    dest = Repository.open(str(tmp_path / "b"))
    manifest = backup(str(SAMPLE), source)
    forged = Manifest.loads(manifest.dumps(), "x")
    forged.files[0].sha256 = "0" * 64
    Catalog(dest).commit(forged)
    with pytest.raises(CopyError, match="describes different files"):
        copy_snapshot(manifest.id, source, dest)
    with pytest.raises(CopyError, match="same repository"):
        copy_snapshot(manifest.id, source, Repository.open(str(tmp_path / "a")))


def _cli(*args: str) -> int:
    """The command line, in this process."""
    from snaptool.cli.main import main
    return main(list(args))


def test_copy_from_the_command_line(proxy: FaultProxy, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    local = str(tmp_path / "local")
    manifest = backup(str(SAMPLE), Repository.open(local))
    dest = f"s3://{_bucket('dst', 'eu-west-1')}/redis"
    assert _cli("copy", "latest", "--repo", local, "--to-repo", dest, "--dest-region", "eu-west-1",
                "--dest-sse", "AES256", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["snapshot"] == manifest.id and report["bytes_written"] == manifest.size
    assert report["files"][0]["action"] == "streamed" and report["manifest"] == "copied"
    bucket, key = Repository.open(dest).bucket_key(file_path(manifest.id, manifest.files[0].name))
    assert boto3.client("s3").head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    assert _cli("copy", manifest.id, "--repo", local, "--to-repo", dest) == 0
    out = capsys.readouterr().out
    assert "already there" in out and "0 B read and 0 B written" in out
    assert _cli("copy", "latest", "--repo", local, "--to-repo", local) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("snaptool: error: ") and "same repository" in err[0]
    assert _cli("copy", "latest", "--repo", local, "--to-repo", dest, "--dest-object-lock-mode", "GOVERNANCE",
                "--dest-object-lock-retain-until", "2001-01-01") == 1
    assert "in the past" in capsys.readouterr().err


def test_an_encrypted_snapshot_is_copied_as_stored(proxy: FaultProxy, tmp_path: Path) -> None:
    from snaptool.crypto import DecryptionKeys, EncryptionOptions
    from snaptool.jobs.backup import BackupOptions

    secret = b"copy test passphrase"
    source = Repository.open(f"s3://{_bucket('src')}/redis")
    manifest = backup(str(SAMPLE), source, BackupOptions(encryption=EncryptionOptions("passphrase", passphrase=secret)))
    entry = manifest.files[0]
    assert entry.stored_sha256 and entry.stored_size != entry.size
    for mode, action in (("auto", "server-copy"), ("stream", "streamed")):
        dest = Repository.open(f"s3://{_bucket('dst')}/redis")
        report = copy_snapshot("latest", source, dest, CopyOptions(mode=mode))
        assert report.files[0].action == action and report.files[0].size == entry.stored_size
        stored = dest.read_bytes(file_path(manifest.id, entry.name))
        assert hashlib.sha256(stored).hexdigest() == entry.stored_sha256  # still encrypted, byte for byte
        result = drill("latest", dest, keys=DecryptionKeys(passphrase=secret))
        assert result.ok, [c for c in result.checks if not c.ok]
