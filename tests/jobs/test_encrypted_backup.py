"""Encrypted backups (age recipients, passphrase, KMS on moto's server) into local and S3
repositories: restored and drilled from, nothing readable stored, tampering and wrong keys refused
before any key is written, each KMS key able to open a snapshot alone."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snaptool.crypto import (CryptoError, DecryptError, DecryptionKeys, EncryptionOptions, X25519Identity,
                             write_identity_file)
from snaptool.engines.sample import populate
from snaptool.errors import SnaptoolError
from snaptool.jobs.backup import BackupOptions, backup
from snaptool.jobs.drill import drill
from snaptool.jobs.fetch import IntegrityError
from snaptool.jobs.restore import RestoreOptions, restore
from snaptool.rdb.reader import RdbReader
from snaptool.storage.catalog import Catalog, file_path
from snaptool.storage.manifest import MANIFEST, Manifest
from snaptool.storage.repository import Repository

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SOURCE = FIXTURES / "valkey-8.1.rdb"
PASSPHRASE = b"a long passphrase for tests"


def key_names(path: Path, count: int = 40) -> list[bytes]:
    """Key names in an RDB file that are long enough not to occur in random bytes by chance."""
    names = []
    with RdbReader.open(str(path)) as reader:
        for record in reader.records():
            if len(record.key) >= 6:
                names.append(record.key)
            if len(names) == count:
                break
    return names


def stored_objects(repo: Repository, manifest: Manifest) -> list[bytes]:
    return [repo.read_bytes(file_path(manifest.id, f.name)) for f in manifest.files]


def assert_nothing_readable(repo: Repository, manifest: Manifest, names: list[bytes]) -> None:
    for blob, entry in zip(stored_objects(repo, manifest), manifest.files):
        assert blob.startswith(b"age-encryption.org/v1\n") and entry.name.endswith(".rdb.age")
        assert b"REDIS00" not in blob and b"VALKEY0" not in blob
        assert not [n for n in names if n in blob]
        assert len(blob) == entry.stored_size and hashlib.sha256(blob).hexdigest() == entry.stored_sha256


def kms_key(region: str) -> str:
    import boto3

    return boto3.client("kms", region_name=region).create_key(Description="snaptool tests")["KeyMetadata"]["Arn"]


@pytest.fixture(params=["local", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repository:
    if request.param == "local":
        return Repository.open(str(tmp_path / "repo"))
    return Repository.open(f"s3://{request.getfixturevalue('s3_bucket')}/backups")


@pytest.fixture
def identity(tmp_path: Path) -> X25519Identity:
    made = X25519Identity.generate()
    write_identity_file(str(tmp_path / "key.txt"), made)
    return made


def scheme_setup(scheme: str, request: pytest.FixtureRequest,
                 identity: X25519Identity) -> tuple[EncryptionOptions, DecryptionKeys | None, list[bytes]]:
    """Options to encrypt with, keys to decrypt with, and the secrets that must never be stored."""
    if scheme == "age":
        return (EncryptionOptions("age", recipients=(str(identity.recipient),)),
                DecryptionKeys(identities=(identity,)), [identity.secret_text().encode()])
    if scheme == "passphrase":
        return EncryptionOptions("passphrase", passphrase=PASSPHRASE), DecryptionKeys(passphrase=PASSPHRASE), \
            [PASSPHRASE]
    request.getfixturevalue("s3_env")  # moto's server answers KMS too
    return EncryptionOptions("kms", kms_key_ids=(kms_key("us-east-1"),)), None, []


@pytest.mark.parametrize("scheme", ["age", "passphrase", "kms"])
def test_encrypted_backup_restores_and_drills(repo: Repository, scheme: str, request: pytest.FixtureRequest,
                                              identity: X25519Identity, tmp_path: Path) -> None:
    encryption, keys, secrets = scheme_setup(scheme, request, identity)
    manifest = backup(str(SOURCE), repo, BackupOptions(encryption=encryption))
    (entry,) = manifest.files
    data = SOURCE.read_bytes()
    assert entry.size == len(data) and entry.sha256 == hashlib.sha256(data).hexdigest()  # the plaintext
    assert entry.stored_size > entry.size
    assert_nothing_readable(repo, manifest, key_names(SOURCE))
    record = Catalog(repo).resolve("latest").encryption
    assert record["scheme"] == scheme and record["format"] == "age-v1"
    if scheme == "age":
        assert record["recipients"] == [str(identity.recipient)]
    if scheme == "kms":
        (wrapped,) = record["kms_keys"]
        assert wrapped["key_arn"] == encryption.kms_key_ids[0] and wrapped["region"] == "us-east-1"
        assert record["encryption_context"] == {"snaptool-snapshot": manifest.id}
    stored_manifest = repo.read_bytes(file_path(manifest.id, MANIFEST))
    assert not [s for s in secrets if s in stored_manifest]

    report = drill(manifest.id, repo, keys=keys)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert f"decrypted ({scheme})" in report.checks[0].message
    restored = restore(manifest.id, repo, RestoreOptions(to_dir=str(tmp_path / "out"), keys=keys))
    assert restored.validation.ok and Path(restored.files[0]).read_bytes() == data
    assert restored.decrypted_with


def test_live_node_backup_encrypted_restores_into_a_node(get_engine, engine_server, identity: X25519Identity,
                                                         tmp_path: Path) -> None:
    engine = get_engine("redis-7.0")
    source = engine_server(engine)
    populate(source.client, engine)
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(source.url, repo, BackupOptions(
        encryption=EncryptionOptions("age", recipients=(str(identity.recipient),))))
    names = [k for db in (0, 1, 5) for k in source.client(db).keys()[:20]]
    assert_nothing_readable(repo, manifest, [n for n in names if len(n) >= 6])
    target = engine_server(engine)
    report = restore("latest", repo, RestoreOptions(to=target.url, keys=DecryptionKeys(identities=(identity,))))
    assert report.validation.ok and report.restored + report.expired_skipped == manifest.keys
    digest = [c.execute_command("DEBUG", "DIGEST") for c in (source.client(), target.client())]
    assert digest[0] == digest[1]


def test_cluster_backup_encrypts_every_shard(get_engine, identity: X25519Identity, tmp_path: Path) -> None:
    from snaptool.engines.cluster import LocalCluster
    from snaptool.rdb.slots import SlotLayout

    engine = get_engine("redis-7.0")
    repo = Repository.open(str(tmp_path / "repo"))
    with LocalCluster(engine, SlotLayout.even(3), [None] * 3) as cluster:
        client = cluster.client()
        for i in range(3000):
            client.set(f"customer:{i}", f"secret-value-{i}")
        manifest = backup(cluster.url, repo, BackupOptions(
            encryption=EncryptionOptions("age", recipients=(str(identity.recipient),))))
    assert len(manifest.files) == 3 and manifest.keys == 3000
    assert_nothing_readable(repo, manifest, [f"customer:{i}".encode() for i in range(0, 3000, 97)] + [b"secret-value"])
    assert len({f.stored_sha256 for f in manifest.files}) == 3
    report = drill(manifest.id, repo, keys=DecryptionKeys(identities=(identity,)))
    assert report.ok, [c for c in report.checks if not c.ok]


# --------------------------------------------------------------------------- tampering, wrong keys

def _rewrite_manifest(repo: Repository, manifest: Manifest, **changes: Any) -> None:
    raw = json.loads(repo.read_bytes(file_path(manifest.id, MANIFEST)))
    for key, value in changes.items():
        if key == "encryption":
            raw["encryption"] = value
        else:
            raw["files"][0][key] = value
    repo.write_bytes(file_path(manifest.id, MANIFEST), json.dumps(raw).encode())


@pytest.mark.parametrize("how", ["one byte", "one byte, manifest rewritten", "truncated, manifest rewritten"])
def test_a_tampered_object_fails_the_restore_before_any_key_is_written(repo: Repository, how: str, get_engine,
                                                                       engine_server,
                                                                       identity: X25519Identity) -> None:
    engine = get_engine("redis-7.0")
    manifest = backup(str(FIXTURES / "redis-7.0.rdb"), repo, BackupOptions(
        encryption=EncryptionOptions("age", recipients=(str(identity.recipient),))))
    entry = manifest.files[0]
    rel = file_path(manifest.id, entry.name)
    blob = bytearray(repo.read_bytes(rel))
    if how.startswith("one byte"):
        blob[len(blob) // 2] ^= 0x20
    else:
        blob = blob[:-1000]
    repo.write_bytes(rel, bytes(blob))
    if "manifest rewritten" in how:  # someone who can write the repository covers the tracks
        _rewrite_manifest(repo, manifest, stored_size=len(blob), stored_sha256=hashlib.sha256(blob).hexdigest())
    target = engine_server(engine)
    keys = DecryptionKeys(identities=(identity,))
    expected = IntegrityError if how == "one byte" else DecryptError
    with pytest.raises(expected) as info:
        restore(manifest.id, repo, RestoreOptions(to=target.url, keys=keys))
    assert entry.name in str(info.value) and info.value.exit_code == 2
    assert "sha256" in str(info.value) if how == "one byte" else "fails authentication" in str(info.value)
    assert target.client().dbsize() == 0
    report = drill(manifest.id, repo, keys=keys)
    assert not report.ok and report.checks[0].name == "fetch and sha256" and entry.name in report.checks[0].message
    assert "load and compare" not in [c.name for c in report.checks]


def test_wrong_or_missing_keys_fail_clearly_before_any_write(get_engine, engine_server, identity: X25519Identity,
                                                             request: pytest.FixtureRequest, tmp_path: Path) -> None:
    engine = get_engine("redis-7.0")
    target = engine_server(engine)
    repo = Repository.open(str(tmp_path / "repo"))
    sample = str(FIXTURES / "redis-7.0.rdb")

    def refused(made: Manifest, keys: DecryptionKeys | None, *fragments: str) -> None:
        with pytest.raises(CryptoError) as info:
            restore(made.id, repo, RestoreOptions(to=target.url, keys=keys))
        for fragment in fragments:
            assert fragment in str(info.value)
        assert "\n" not in str(info.value) and target.client().dbsize() == 0

    to_identity = EncryptionOptions("age", recipients=(str(identity.recipient),))
    made = backup(sample, repo, BackupOptions(encryption=to_identity))
    refused(made, None, "--identity", str(identity.recipient))
    stranger = X25519Identity.generate()
    refused(made, DecryptionKeys(identities=(stranger,)), "wrong key", str(stranger.recipient))
    refused(made, DecryptionKeys(passphrase=b"no"), "--identity")
    _rewrite_manifest(repo, made, encryption={"scheme": "age", "format": "age-v1",
                                              "recipients": [str(stranger.recipient)]})
    refused(made, DecryptionKeys(identities=(stranger,)), made.files[0].name, "wrong key")  # the manifest lied

    made = backup(sample, repo, BackupOptions(encryption=EncryptionOptions("passphrase", passphrase=PASSPHRASE)))
    refused(made, None, "--passphrase-file")
    refused(made, DecryptionKeys(passphrase=b"not it"), made.files[0].name, "wrong passphrase")

    request.getfixturevalue("s3_env")
    made = backup(sample, repo, BackupOptions(encryption=EncryptionOptions("kms", kms_key_ids=(kms_key("us-east-1"),))))
    record = json.loads(json.dumps(made.encryption))
    record["encryption_context"] = {"snaptool-snapshot": "some-other-snapshot"}  # a wrapped key moved over
    _rewrite_manifest(repo, made, encryption=record)
    refused(made, None, "no KMS key could unwrap", made.encryption["kms_keys"][0]["key_arn"], "InvalidCiphertext")
    with pytest.raises(CryptoError, match="needs --recipient"):
        backup(sample, repo, BackupOptions(encryption=EncryptionOptions("age", recipients=())))
    with pytest.raises(CryptoError, match="NotFound"):  # a KMS key that does not exist: no snapshot at all
        backup(sample, repo, BackupOptions(encryption=EncryptionOptions("kms", kms_key_ids=("alias/missing",))))
    assert len(Catalog(repo).list()) == 3


def test_each_kms_key_opens_the_snapshot_alone(s3_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two keys in two regions wrap one data key: either opens it, the local region's first."""
    east, west = kms_key("us-east-1"), kms_key("eu-west-1")
    repo = Repository.open(str(tmp_path / "repo"))
    manifest = backup(str(SOURCE), repo, BackupOptions(encryption=EncryptionOptions("kms", kms_key_ids=(east, west))))
    wrapped = manifest.encryption["kms_keys"]
    assert [(w["key_arn"], w["region"]) for w in wrapped] == [(east, "us-east-1"), (west, "eu-west-1")]
    assert wrapped[0]["wrapped_key"] != wrapped[1]["wrapped_key"]

    runs = iter(range(100))

    def opened_with() -> str:
        report = restore(manifest.id, repo, RestoreOptions(to_dir=str(tmp_path / f"out-{next(runs)}")))
        assert report.validation.ok
        return report.decrypted_with

    assert opened_with() == f"KMS key {east}"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert opened_with() == f"KMS key {west}"
    broken = json.loads(json.dumps(manifest.encryption))
    broken["kms_keys"][1]["wrapped_key"] = broken["kms_keys"][0]["wrapped_key"]  # the west key cannot open it
    _rewrite_manifest(repo, manifest, encryption=broken)
    assert opened_with() == f"KMS key {east}"  # skipped, the other one used
    only_west = dict(manifest.encryption, kms_keys=[manifest.encryption["kms_keys"][1]])
    _rewrite_manifest(repo, manifest, encryption=only_west)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert opened_with() == f"KMS key {west}"  # a copy holding only the other region's key



@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_client_side_encryption_under_sse(sse: str, s3_bucket: str, identity: X25519Identity,
                                          tmp_path: Path) -> None:
    """SSE on top of age: S3 stores the age file encrypted again, and it restores as before."""
    import boto3

    from snaptool.storage.repository import S3Settings

    sse_key = kms_key("us-east-1") if sse == "aws:kms" else None
    repo = Repository.open(f"s3://{s3_bucket}/backups", s3=S3Settings(sse=sse, sse_kms_key_id=sse_key))
    manifest = backup(str(SOURCE), repo, BackupOptions(
        encryption=EncryptionOptions("age", recipients=(str(identity.recipient),))))
    stored = f"backups/{file_path(manifest.id, manifest.files[0].name)}"
    head = boto3.client("s3").head_object(Bucket=s3_bucket, Key=stored)
    assert head["ServerSideEncryption"] == sse and head.get("SSEKMSKeyId") == sse_key
    assert_nothing_readable(repo, manifest, key_names(SOURCE))
    keys = DecryptionKeys(identities=(identity,))
    restored = restore(manifest.id, repo, RestoreOptions(to_dir=str(tmp_path / "out"), keys=keys))
    assert restored.validation.ok and Path(restored.files[0]).read_bytes() == SOURCE.read_bytes()


@pytest.mark.parametrize("scheme", ["age", "passphrase", "kms"])
def test_a_cross_region_copy_restores_and_drills(scheme: str, s3_bucket: str, request: pytest.FixtureRequest,
                                                 identity: X25519Identity, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A snapshot copied to a bucket in another region opens there: for KMS with that region's key."""
    import boto3

    from snaptool.jobs.copy import copy_snapshot
    from snaptool.storage.repository import S3Settings

    encryption, keys, _ = scheme_setup(scheme, request, identity)
    if scheme == "kms":
        west = kms_key("eu-west-1")
        encryption = EncryptionOptions("kms", kms_key_ids=(*encryption.kms_key_ids, west))
    home = Repository.open(f"s3://{s3_bucket}/backups")
    manifest = backup(str(SOURCE), home, BackupOptions(encryption=encryption))
    far_bucket = s3_bucket[:50] + "-west"
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=far_bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    far = Repository.open(f"s3://{far_bucket}/copies", s3=S3Settings(region="eu-west-1"))
    copy_snapshot(manifest.id, home, far)

    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # restoring in the other region
    copied = Catalog(far).resolve("latest")
    assert copied.encryption == manifest.encryption
    assert_nothing_readable(far, copied, key_names(SOURCE))
    report = drill(copied.id, far, keys=keys)
    assert report.ok, [c for c in report.checks if not c.ok]
    restored = restore(copied.id, far, RestoreOptions(to_dir=str(tmp_path / "out"), keys=keys))
    assert restored.validation.ok and Path(restored.files[0]).read_bytes() == SOURCE.read_bytes()
    if scheme == "kms":
        assert restored.decrypted_with == f"KMS key {west}"

@pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed (apt-get install age)")
def test_stored_objects_open_with_the_age_cli(s3_env: str, identity: X25519Identity, tmp_path: Path) -> None:
    """age recipients and KMS snapshots both store standard age files (KMS: after key kms-identity)."""
    repo = Repository.open(str(tmp_path / "repo"))
    data = SOURCE.read_bytes()
    made = backup(str(SOURCE), repo, BackupOptions(
        encryption=EncryptionOptions("age", recipients=(str(identity.recipient),))))
    stored = repo.local_path(file_path(made.id, made.files[0].name))
    out = subprocess.run(["age", "-d", "-i", str(tmp_path / "key.txt"), stored], capture_output=True, check=True)
    assert out.stdout == data
    with_kms = EncryptionOptions("kms", kms_key_ids=(kms_key("us-east-1"),))
    made = backup(str(SOURCE), repo, BackupOptions(encryption=with_kms))
    derived = tmp_path / "kms-key.txt"
    result = run_cli("key", "kms-identity", made.id, "--repo", repo.url, "-o", str(derived))
    assert result.returncode == 0, result.stderr
    stored = repo.local_path(file_path(made.id, made.files[0].name))
    out = subprocess.run(["age", "-d", "-i", str(derived), stored], capture_output=True, check=True)
    assert out.stdout == data


# --------------------------------------------------------------------------- the command line

_RUN_SNAPTOOL = """
import sys
from snaptool.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The snaptool command line in a real process (with `key` registered even before main.py lists it)."""
    return subprocess.run([sys.executable, "-c", _RUN_SNAPTOOL, *args], capture_output=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("snaptool: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_the_encrypted_loop_from_the_command_line(tmp_path: Path, engine_server) -> None:
    key = tmp_path / "key.txt"
    made = run_cli("key", "generate", "-o", str(key))
    assert made.returncode == 0, made.stderr
    recipient = made.stdout.decode().strip()
    assert recipient.startswith("age1") and oct(key.stat().st_mode & 0o777) == "0o600"
    assert run_cli("key", "recipient", "-i", str(key)).stdout.decode().strip() == recipient
    one_line_error(run_cli("key", "generate", "-o", str(key)), 1, "already exists")
    repo = str(tmp_path / "repo")
    sample = str(FIXTURES / "redis-7.0.rdb")
    done = run_cli("backup", sample, "--repo", repo, "--encrypt", "age", "--recipient", recipient, "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["encryption"]["recipients"] == [recipient]
    stored_manifest = Path(repo, "snapshots", manifest["id"], MANIFEST).read_bytes()
    assert key.read_text().splitlines()[-1].encode() not in stored_manifest
    failed = run_cli("drill", "--repo", repo)  # the failed step is echoed, then the one-line error
    assert failed.returncode == 4 and b"Traceback" not in failed.stderr
    assert failed.stderr.decode().strip().splitlines()[-1].startswith("snaptool: error: drill failed at 'fetch")
    assert b"--identity" in failed.stderr
    drilled = run_cli("drill", "--repo", repo, "--identity", str(key))
    assert drilled.returncode == 0, drilled.stderr
    target = engine_server("redis-7.0")
    one_line_error(run_cli("restore", "latest", "--repo", repo, "--to", target.url), 1, "--identity", recipient)
    restored = run_cli("restore", "latest", "--repo", repo, "--to", target.url, "--identity", str(key), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["validation"]["ok"]
    shown = run_cli("show", "latest", "--repo", repo).stdout.decode()
    assert f"encrypted at rest: age-v1, to {recipient}" in shown
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("words words words\n")
    locked = run_cli("backup", sample, "--repo", repo, "--encrypt", "passphrase", "--passphrase-file", str(passphrase))
    assert locked.returncode == 0 and b"encrypted (passphrase)" in locked.stdout, locked.stderr
    drilled = run_cli("drill", "--repo", repo, "--passphrase-file", str(passphrase))
    assert drilled.returncode == 0, drilled.stderr


def test_several_recipients_and_kms_from_the_command_line(s3_env: str, tmp_path: Path) -> None:
    """--recipient is repeatable and takes a --recipients-file beside it: any one identity opens the
    snapshot; a KMS snapshot restores and drills with no key option at all."""
    keys = [tmp_path / f"key{i}.txt" for i in range(3)]
    recipients = [run_cli("key", "generate", "-o", str(k)).stdout.decode().strip() for k in keys]
    listed = tmp_path / "recipients.txt"
    listed.write_text(f"# the standby site\n{recipients[2]}\n")
    repo = str(tmp_path / "repo")
    sample = str(FIXTURES / "redis-7.0.rdb")
    done = run_cli("backup", sample, "--repo", repo, "--encrypt", "age", "--recipient", recipients[0],
                   "--recipient", recipients[1], "--recipients-file", str(listed), "--json")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["encryption"]["recipients"]) == sorted(recipients)
    for key in keys:
        drilled = run_cli("drill", "latest", "--repo", repo, "--identity", str(key))
        assert drilled.returncode == 0, drilled.stderr

    arn = kms_key("us-east-1")
    kms_repo = str(tmp_path / "kms-repo")
    done = run_cli("backup", sample, "--repo", kms_repo, "--encrypt", "kms", "--kms-key-id", arn)
    assert done.returncode == 0, done.stderr
    assert run_cli("drill", "latest", "--repo", kms_repo).returncode == 0
    restored = run_cli("restore", "latest", "--repo", kms_repo, "--to-dir", str(tmp_path / "out"), "--json")
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["validation"]["ok"] and report["decrypted_with"] == f"KMS key {arn}"


def test_bad_encryption_options_are_refused_before_anything_is_read(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sample = str(FIXTURES / "redis-7.0.rdb")
    usage = run_cli("backup", sample, "--repo", str(repo), "--recipient", "age1x")
    assert usage.returncode == 2 and b"--encrypt" in usage.stderr
    one_line_error(run_cli("backup", sample, "--repo", str(repo), "--encrypt", "age", "--recipient", "age1nope"),
                   1, "age1nope", "not an age recipient")
    one_line_error(run_cli("backup", sample, "--repo", str(repo), "--encrypt", "age"), 1, "--recipient")
    one_line_error(run_cli("backup", sample, "--repo", str(repo), "--encrypt", "kms"), 1, "--kms-key-id")
    one_line_error(run_cli("backup", sample, "--repo", str(repo), "--encrypt", "passphrase", "--passphrase-file",
                           str(tmp_path / "missing")), 1, "not found")
    assert not repo.exists()
    with pytest.raises(SnaptoolError, match="does not take"):
        EncryptionOptions("age", recipients=(str(X25519Identity.generate().recipient),), passphrase=b"x").check()
