"""S3 repository settings against moto's server over HTTP: encryption, storage class, object lock,
canned ACLs, part sizes and the check after every upload."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from s3_support import FaultProxy, aws_environment, moto_server
from snaptool.storage.repository import Repository, RepositoryError, S3Settings
from snaptool.storage.s3 import parse_retain_until


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server(S3_UPLOAD_PART_MIN_SIZE="1024") as url:  # multipart with small objects
        yield url


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    aws_environment(monkeypatch, endpoint, tmp_path)
    name = f"settings-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _head(bucket: str, key: str) -> dict:
    return boto3.client("s3").head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")


@pytest.mark.parametrize("size", [3000, 100_000])  # one PUT, and a 7-part multipart upload
def test_encryption_and_storage_class_apply_to_every_object(bucket: str, size: int) -> None:
    repo = Repository.open(f"s3://{bucket}/r", s3=S3Settings(sse="AES256", storage_class="STANDARD_IA",
                                                              part_size=16 << 10))
    data = os.urandom(size)
    repo.write_bytes("a.rdb", data)
    head = _head(bucket, "r/a.rdb")
    assert head["ServerSideEncryption"] == "AES256" and head["StorageClass"] == "STANDARD_IA"
    assert repo.read_bytes("a.rdb") == data
    parts = -(-size // (16 << 10))
    if parts > 1:  # S3's checksum of a multipart object: SHA-256 over the parts' SHA-256s
        digests = b"".join(hashlib.sha256(data[i:i + (16 << 10)]).digest() for i in range(0, size, 16 << 10))
        assert head["ETag"].strip('"').endswith(f"-{parts}")
        assert head["ChecksumSHA256"].split("-")[0] == base64.b64encode(hashlib.sha256(digests).digest()).decode()
    else:
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_sse_kms_with_a_key_id(bucket: str) -> None:
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    repo = Repository.open(f"s3://{bucket}", s3=S3Settings(sse="aws:kms", sse_kms_key_id=key_id, part_size=16 << 10))
    repo.write_bytes("small", b"x" * 10)
    repo.write_bytes("big", os.urandom(40_000))
    for key in ("small", "big"):
        head = _head(bucket, key)
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith(key_id)


def test_object_lock_protects_what_was_written(bucket: str) -> None:
    s3 = boto3.client("s3")
    locked = f"locked-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    repo = Repository.open(f"s3://{locked}/r", s3=S3Settings(object_lock_mode="COMPLIANCE",
                                                              object_lock_retain_until=until))
    repo.write_bytes("snapshots/x/manifest.json", b"{}")
    head = _head(locked, "r/snapshots/x/manifest.json")
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] == until
    with pytest.raises(Exception, match="AccessDenied"):  # the version cannot be deleted before the date
        s3.delete_object(Bucket=locked, Key="r/snapshots/x/manifest.json", VersionId=head["VersionId"])
    plain = Repository.open(f"s3://{bucket}", s3=S3Settings(object_lock_mode="GOVERNANCE",
                                                             object_lock_retain_until=until))
    with pytest.raises(RepositoryError, match=r"ObjectLockConfiguration") as info:  # one line, names the object
        plain.write_bytes("m.json", b"{}")
    assert f"s3://{bucket}/m.json" in str(info.value) and "\n" not in str(info.value)


def test_object_lock_and_storage_class_reach_every_write_request(endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """The lock S3 stored for a single PUT; moto keeps none for a multipart upload, so there the
    CreateMultipartUpload request is read at a proxy. Copies inside S3 (CopyObject, and a part copy's
    CreateMultipartUpload) carry the storage class too."""
    from snaptool.storage.s3copy import server_copy

    aws_environment(monkeypatch, endpoint, tmp_path)
    s3 = boto3.client("s3")
    locked, plain = f"locked-{uuid.uuid4().hex[:10]}", f"plain-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=plain)
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)
    proxy = FaultProxy(endpoint)
    try:
        settings = S3Settings(endpoint_url=proxy.url, object_lock_mode="GOVERNANCE", object_lock_retain_until=until,
                              storage_class="STANDARD_IA", part_size=16 << 10)
        repo = Repository.open(f"s3://{locked}", s3=settings)
        small, big = b"x" * 100, os.urandom(50_000)
        repo.write_bytes("small", small)
        repo.write_bytes("big", big)
        creates = [s for s in proxy.traffic.seen if s.method == "POST" and s.query == "uploads"]
        copying = S3Settings(endpoint_url=proxy.url, storage_class="ONEZONE_IA")
        for key, data in (("small", small), ("big", big)):
            server_copy(repo.client, (locked, key), (plain, key), size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(), write_args=copying.write_args(),
                        owner_args=copying.owner_args(), where=key, threshold=1000, part_size=16 << 10)
    finally:
        proxy.close()
    stored = _head(locked, "small")
    assert (stored["ObjectLockMode"], stored["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    (create,) = creates  # the multipart upload of "big"
    assert create.headers["x-amz-object-lock-mode"] == "GOVERNANCE"
    sent = create.headers["x-amz-object-lock-retain-until-date"].replace("Z", "+00:00")
    assert datetime.fromisoformat(sent) == until and create.headers["x-amz-storage-class"] == "STANDARD_IA"
    for bucket, storage_class in ((locked, "STANDARD_IA"), (plain, "ONEZONE_IA")):
        for key in ("small", "big"):
            assert _head(bucket, key)["StorageClass"] == storage_class
    assert _head(plain, "big")["ETag"].strip('"').endswith("-4")  # the part copy


def test_canned_acl_and_expected_owner_are_sent(bucket: str, endpoint: str) -> None:
    proxy = FaultProxy(endpoint)
    try:
        repo = Repository.open(f"s3://{bucket}", s3=S3Settings(endpoint_url=proxy.url, acl="bucket-owner-full-control",
                                                                expected_bucket_owner="123456789012"))
        repo.write_bytes("f", b"data")
    finally:
        proxy.close()
    put = next(s for s in proxy.traffic.seen if s.method == "PUT")
    assert put.status == 200
    acl = boto3.client("s3").get_object_acl(Bucket=bucket, Key="f")
    assert any(g["Permission"] == "FULL_CONTROL" for g in acl["Grants"])


def test_reread_verification_catches_a_corrupted_part(bucket: str, endpoint: str) -> None:
    """A bit flipped on the way to the store: the read-back check finds it and nothing is kept."""
    proxy = FaultProxy(endpoint)
    try:
        settings = S3Settings(endpoint_url=proxy.url, part_size=16 << 10, verify="reread")
        repo = Repository.open(f"s3://{bucket}", s3=settings)
        data = os.urandom(50_000)
        proxy.fail("tamper", lambda r: r.is_upload_part and r.query["partNumber"] == ["2"])
        with pytest.raises(RepositoryError, match="upload not verified: reading it back gives sha256"):
            repo.write_bytes("bad.rdb", data)
        assert repo.head("bad.rdb") is None  # removed
        repo.write_bytes("good.rdb", data)  # no fault left: stored and verified by reading it back
        gets = [s for s in proxy.traffic.seen if s.method == "GET" and s.path.endswith("good.rdb")]
        assert sum(s.down for s in gets) == len(data)
    finally:
        proxy.close()


def test_expected_digest_mismatch_stores_nothing(bucket: str, tmp_path: Path) -> None:
    for repo in (Repository.open(f"s3://{bucket}", s3=S3Settings(part_size=16 << 10)),
                 Repository.open(str(tmp_path / "local"))):
        for size in (10, 40_000):
            with pytest.raises(RepositoryError, match="expected"):
                with repo.writer("f.rdb", size, sha256="0" * 64) as f:
                    f.write(b"y" * size)
            assert repo.head("f.rdb") is None
        data = b"z" * 40_000
        with repo.writer("f.rdb", len(data), sha256=hashlib.sha256(data).hexdigest()) as f:
            f.write(data)
        info = repo.head("f.rdb")
        assert info is not None and info.size == len(data)
        if not repo.is_local:
            assert info.metadata["sha256"] == hashlib.sha256(data).hexdigest()


def test_bad_settings_are_one_line_errors() -> None:
    for kwargs, text in [({"sse": "aes"}, "SSE must be"), ({"sse_kms_key_id": "k"}, "needs SSE aws:kms"),
                         ({"storage_class": "COLD"}, "unknown storage class"),
                         ({"object_lock_mode": "GOVERNANCE"}, "needs both"),
                         ({"acl": "everyone"}, "unknown canned ACL"),
                         ({"expected_bucket_owner": "me"}, "12-digit"), ({"verify": "maybe"}, "verify must")]:
        with pytest.raises(RepositoryError, match=text):
            S3Settings(**kwargs)


def test_retain_until_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retain_until("30d", now) == now + timedelta(days=30)
    assert parse_retain_until("2027-01-31", now) == datetime(2027, 1, 31, tzinfo=timezone.utc)
    assert parse_retain_until("2027-01-31T12:00:00Z", now).hour == 12
    for bad in ("2020-01-01", "soon"):
        with pytest.raises(RepositoryError):
            parse_retain_until(bad, now)


def test_write_options_give_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import click
    from click.testing import CliRunner

    from snaptool.cli.s3options import s3_write_options

    made: list[S3Settings] = []

    @click.command()
    @s3_write_options()
    def command(s3_write: dict) -> None:
        made.append(S3Settings(**s3_write))

    monkeypatch.setenv("SNAPTOOL_S3_STORAGE_CLASS", "STANDARD_IA")
    result = CliRunner().invoke(command, ["--s3-sse", "aws:kms", "--s3-sse-kms-key-id", "alias/backups",
                                          "--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-retain-until", "30d",
                                          "--s3-acl", "bucket-owner-full-control", "--s3-max-attempts", "3"])
    assert result.exit_code == 0, result.output
    (settings,) = made
    assert settings.write_args()["ServerSideEncryption"] == "aws:kms" and settings.storage_class == "STANDARD_IA"
    assert settings.write_args()["ObjectLockRetainUntilDate"] > datetime.now(timezone.utc) + timedelta(days=29)
    assert settings.acl == "bucket-owner-full-control" and settings.attempts() == 3


# --------------------------------------------------------------------------- the AWS environment

def _profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **profiles: tuple[str, str]) -> None:
    """AWS config and credentials files with ``name=(access key id, endpoint)`` profiles, as a user
    keeps them; the environment's own keys and endpoint are taken away."""
    config, credentials = tmp_path / "aws-config", tmp_path / "aws-credentials"
    config.write_text("".join(f"[profile {name}]\nregion = us-east-1\nendpoint_url = {url}\n\n"
                              for name, (_, url) in profiles.items()))
    credentials.write_text("".join(f"[{name}]\naws_access_key_id = {key}\naws_secret_access_key = secret-{name}\n\n"
                                   for name, (key, _) in profiles.items()))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def _signed_by(proxy: FaultProxy) -> set[str]:
    """The access key ids that signed the requests the proxy saw."""
    return {s.headers["authorization"].split("Credential=")[1].split("/")[0] for s in proxy.traffic.seen
            if "authorization" in s.headers}


def _direct(endpoint: str) -> Any:
    """A client of moto itself, past the proxy (a fresh session: the files changed)."""
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                          aws_access_key_id="x", aws_secret_access_key="x")


def test_aws_profile_from_the_environment_is_used(bucket: str, endpoint: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE alone (its keys, region and endpoint in the files) reaches the bucket."""
    proxy = FaultProxy(endpoint)
    try:
        _profiles(tmp_path, monkeypatch, backups=("AKIABACKUPSPROFILE01", proxy.url))
        monkeypatch.setenv("AWS_PROFILE", "backups")
        repo = Repository.open(f"s3://{bucket}/r")
        repo.write_bytes("a.rdb", b"written as the profile")
        assert repo.read_bytes("a.rdb") == b"written as the profile"
    finally:
        proxy.close()
    assert _signed_by(proxy) == {"AKIABACKUPSPROFILE01"} and proxy.traffic.up >= len(b"written as the profile")
    direct = _direct(endpoint)
    assert direct.get_object(Bucket=bucket, Key="r/a.rdb")["Body"].read() == b"written as the profile"


def test_profile_and_endpoint_flags_win_over_the_environment(bucket: str, endpoint: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE and AWS_ENDPOINT_URL name a profile and a port nobody listens on; --s3-profile and
    --s3-endpoint-url on the command line are what is used."""
    import socket

    from snaptool.cli.main import main

    with socket.socket() as s:  # a port that was free a moment ago: nothing answers there
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    proxy = FaultProxy(endpoint)
    try:
        _profiles(tmp_path, monkeypatch, ambient=("AKIAAMBIENTPROFILE01", dead), chosen=("AKIACHOSENPROFILE001", dead))
        monkeypatch.setenv("AWS_PROFILE", "ambient")
        monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        sample = Path(__file__).resolve().parents[2] / "fixtures" / "redis-6.2.rdb"
        flags = ["--repo", f"s3://{bucket}/r", "--s3-profile", "chosen", "--s3-endpoint-url", proxy.url]
        assert main(["backup", str(sample), *flags]) == 0
    finally:
        proxy.close()
    assert _signed_by(proxy) == {"AKIACHOSENPROFILE001"}
    direct = _direct(endpoint)
    keys = [o["Key"] for o in direct.list_objects_v2(Bucket=bucket, Prefix="r/snapshots/").get("Contents", [])]
    rdb = [k for k in keys if k.endswith(".rdb")]
    assert len(rdb) == 1 and any(k.endswith("/manifest.json") for k in keys)
    assert direct.get_object(Bucket=bucket, Key=rdb[0])["Body"].read() == sample.read_bytes()
