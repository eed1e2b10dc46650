"""Repositories on local disk and on S3 (moto's server over HTTP) behave the same way."""

from __future__ import annotations

import os

import pytest

from snaptool.storage.catalog import Catalog, SnapshotNotFound, file_path, shard_file_name
from snaptool.storage.manifest import DbStats, FileEntry, Manifest, ManifestError, new_snapshot_id
from snaptool.storage.repository import MAX_PARTS, Repository, RepositoryError, part_size_for


@pytest.fixture(params=["local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path) -> Repository:
    if request.param == "local":
        return Repository.open(str(tmp_path / "repo"))
    bucket = request.getfixturevalue("s3_bucket")
    return Repository.open(f"s3://{bucket}/some/prefix")


def _manifest(snapshot_id: str, names: list[str]) -> Manifest:
    files = [FileEntry(name=n, size=3, sha256="0" * 64, rdb_version=11, magic="REDIS0011", crc64=None,
                       databases={0: DbStats(5, 1)}) for n in names]
    return Manifest(id=snapshot_id, created="2026-11-26T07:00:00Z", kind="manual",
                    source={"url": "redis://h:1", "type": "node"}, files=files)


def test_a_file_appears_only_when_complete(repo: Repository) -> None:
    data = os.urandom(20 << 20)  # above the part size: a multipart upload on S3
    with repo.writer("snapshots/x/a.rdb", len(data)) as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i:i + (1 << 20)])
        assert not repo.exists("snapshots/x/a.rdb")
    assert repo.read_bytes("snapshots/x/a.rdb") == data
    with pytest.raises(RuntimeError):
        with repo.writer("snapshots/x/b.rdb") as f:
            f.write(data)
            raise RuntimeError("the source died")
    assert not repo.exists("snapshots/x/b.rdb")
    assert [name for name, _, _ in repo.listdir("snapshots/x")] == ["a.rdb"]


def test_catalog_lists_complete_and_incomplete_snapshots(repo: Repository) -> None:
    catalog = Catalog(repo)
    assert catalog.list() == []
    done = new_snapshot_id("node-a")
    half = new_snapshot_id("node-b")
    for sid in (done, half):
        repo.write_bytes(file_path(sid, shard_file_name(sid, 1)), b"abc")
    catalog.commit(_manifest(done, [shard_file_name(done, 1)]))
    listing = {e.id: e for e in catalog.list()}
    assert listing[done].complete and listing[done].manifest.keys == 5
    assert not listing[half].complete and "no manifest" in listing[half].problem
    assert catalog.resolve("latest").id == done  # the incomplete one is never chosen
    assert catalog.resolve(done[:20]).id == done
    with pytest.raises(SnapshotNotFound, match="incomplete"):
        catalog.resolve(half)
    catalog.forget(done)
    assert [e.id for e in catalog.list()] == [half]
    with pytest.raises(SnapshotNotFound):
        catalog.resolve("latest")


def test_a_broken_manifest_is_listed_as_incomplete(repo: Repository) -> None:
    sid = new_snapshot_id("x")
    repo.write_bytes(file_path(sid, "manifest.json"), b"{not json")
    (entry,) = Catalog(repo).list()
    assert not entry.complete and "not a valid manifest" in entry.problem
    with pytest.raises(ManifestError):
        Catalog(repo).manifest(sid)


def test_manifest_round_trip_keeps_every_field() -> None:
    m = _manifest(new_snapshot_id("x"), ["a"])
    m.files[0].slots = [[0, 5460]]
    again = Manifest.loads(m.dumps(), "here")
    assert again == m and again.files[0].databases[0] == DbStats(5, 1)


def test_snapshot_ids_sort_by_time_and_are_unique() -> None:
    ids = {new_snapshot_id("Redis://Host:6379") for _ in range(50)}
    assert len(ids) == 50
    assert all(i[8] == "T" and "redis-host-6379" in i for i in ids)


def test_part_size_keeps_uploads_under_ten_thousand_parts() -> None:
    for size in (0, 1, 5 << 30, 80 << 30, 5 << 40):
        part = part_size_for(size)
        assert part >= 8 << 20 and -(-size // part) < MAX_PARTS


def test_missing_bucket_is_one_clear_error(s3_env: str) -> None:
    repo = Repository.open("s3://no-such-bucket-here/x")
    with pytest.raises(RepositoryError, match="no-such-bucket-here"):
        repo.read_bytes("snapshots/a/manifest.json")
