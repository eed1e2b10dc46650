"""The age v1 implementation: interoperable with rage (pyrage) and the age CLI both ways, every
alteration and truncation refused, wrong keys named, constant memory at any size."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from snaptool.crypto import (AgeWriter, CryptoError, DecryptError, ScryptIdentity, ScryptRecipient, X25519Identity,
                             X25519Recipient, decrypt, kms_identity, load_identities, parse_recipients,
                             read_passphrase, stored_size, write_identity_file)
from snaptool.crypto import bech32
from snaptool.crypto.age import CHUNK, TAG, Stanza, encode_header

try:  # rage's Python binding: the reference implementation for the interoperability tests
    import pyrage
except ImportError:  # pragma: no cover - the test extra installs it
    pyrage = None
needs_rage = pytest.mark.skipif(pyrage is None, reason="pyrage is not installed")
AGE = shutil.which("age")
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 200_003]


def seal(data: bytes, recipients: list, step: int = 7777) -> bytes:
    out = io.BytesIO()
    writer = AgeWriter(out, recipients)
    for i in range(0, len(data), step):
        writer.write(data[i:i + step])
    writer.close()
    return out.getvalue()


def open_(blob: bytes, identities: list) -> bytes:
    return b"".join(decrypt(io.BytesIO(blob), identities))


def _header_size(blob: bytes) -> int:
    return blob.index(b"\n", blob.index(b"\n---") + 1) + 1


# --------------------------------------------------------------------------- keys and encodings

def test_bech32_matches_the_reference_vectors() -> None:
    assert bech32.decode("A12UEL5L") == ("a", b"")
    assert bech32.decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")[0] == "abcdef"
    for bad in ("A12uEL5L", "a12uel5m", "1pzry9x8gf2tvdw0s3jn54khce6mua7l", "a1b2"):
        with pytest.raises(ValueError):
            bech32.decode(bad)


@needs_rage
def test_identities_and_recipients_read_the_same_as_rage() -> None:
    theirs = pyrage.x25519.Identity.generate()
    mine = X25519Identity.parse(str(theirs))
    assert str(mine.recipient) == str(theirs.to_public())
    assert X25519Recipient.parse(str(theirs.to_public())) == mine.recipient
    made = X25519Identity.generate()
    assert str(pyrage.x25519.Identity.from_str(made.secret_text()).to_public()) == str(made.recipient)
    assert made.secret_text() not in repr(made)
    with pytest.raises(CryptoError, match="not an age"):
        X25519Recipient.parse("age1notarecipient")
    with pytest.raises(CryptoError):
        X25519Recipient.parse(str(made.recipient).upper())  # recipients are lowercase


# --------------------------------------------------------------------------- interoperability

#: Written by the age 1.1 CLI (``age-keygen``, then ``age -e -r``): a known answer that needs no tool.
KAT_IDENTITY = "AGE-SECRET-KEY-15X4EE2AR30N2FEPP6AKC0Q9PD4T383NT6LAYPDVVERZJRCYDMY6SHT6UZS"
KAT_FILE = (
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSB5eEpIZlZGRHMxNTVhSXlHVTdoYW9MWVVwejVGVVQrMGFiS3QzYmRQTmlZCmxvMmw0Z1ph"
    "Z1pONU5NbWNpdjQvZWJwRVdNRXBhSzgvenlmVmRUbFB1LzgKLS0tIGhkOUZZdDBmeTh2TVNhdzBRekVvZ05JMVhJaWpiejduT3F1eFJkd1lqNnMK"
    "QqxQjTOj5fINeFinitPuShGJlOSsi65Fz6GVMoxTYzzmXOAu5agnZDmkzb1Zi+OyD26fKvmd/UZs+8ukfSVuDxcjLMtYWGL82yy3pRs0HSE=")


def test_a_file_the_age_cli_wrote_decrypts() -> None:
    import base64

    blob = base64.b64decode(KAT_FILE)
    assert open_(blob, [X25519Identity.parse(KAT_IDENTITY)]) == b"snaptool known answer: a file the age CLI wrote\n"
    with pytest.raises(CryptoError, match="wrong key"):
        open_(blob, [X25519Identity.generate()])


@needs_rage
@pytest.mark.parametrize("size", SIZES)
def test_rage_reads_what_snaptool_writes_and_back(size: int) -> None:
    data = os.urandom(size)
    rage_identity = pyrage.x25519.Identity.generate()
    mine = X25519Identity.generate()
    blob = seal(data, [X25519Recipient.parse(str(rage_identity.to_public())), mine.recipient])
    assert len(blob) == stored_size(size, _header_size(blob))
    assert pyrage.decrypt(blob, [rage_identity]) == data
    assert open_(blob, [mine]) == data
    theirs = pyrage.encrypt(data, [pyrage.x25519.Identity.from_str(mine.secret_text()).to_public()])
    assert open_(theirs, [mine]) == data  # rage adds grease stanzas: unknown stanzas are skipped


def test_any_pattern_of_writes_gives_the_same_plaintext() -> None:
    import random

    rng = random.Random(6)
    data = os.urandom(9 * CHUNK + 123)
    identity = X25519Identity.generate()
    for _ in range(20):
        out = io.BytesIO()
        writer = AgeWriter(out, [identity.recipient])
        at = 0
        while at < len(data):
            n = rng.choice([0, 1, 17, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, rng.randrange(1, 5 * CHUNK)])
            writer.write(data[at:at + n])
            at += n
        writer.close()
        assert open_(out.getvalue(), [identity]) == data
        if pyrage is not None:
            assert pyrage.decrypt(out.getvalue(), [pyrage.x25519.Identity.from_str(identity.secret_text())]) == data


@needs_rage
def test_passphrases_interoperate_with_rage() -> None:
    data = os.urandom(3 * CHUNK + 5)
    blob = seal(data, [ScryptRecipient(b"correct horse", work_factor=12)])
    assert pyrage.passphrase.decrypt(blob, "correct horse") == data
    theirs = pyrage.passphrase.encrypt(data, "correct horse")  # rage picks its own work factor
    assert open_(theirs, [ScryptIdentity(b"correct horse", max_work_factor=22)]) == data


@needs_rage
def test_keys_derived_ahead_wrap_one_file_each_and_still_open() -> None:
    recipient = ScryptRecipient(b"correct horse", work_factor=12)
    recipient.prefetch(2)
    blobs = [seal(b"payload %d" % i, [recipient]) for i in range(3)]  # two derived ahead, one inline
    salts = {blob.split(b"\n")[1].split(b" ")[2] for blob in blobs}
    assert len(salts) == 3  # a fresh salt (and key) for every file
    assert [pyrage.passphrase.decrypt(blob, "correct horse") for blob in blobs] == [b"payload %d" % i
                                                                                     for i in range(3)]


@pytest.mark.skipif(AGE is None, reason="the age CLI is not installed (apt-get install age)")
def test_the_age_cli_reads_what_snaptool_writes_and_back(tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 17)
    key = tmp_path / "key.txt"
    identity = X25519Identity.generate()
    write_identity_file(str(key), identity)
    blob = tmp_path / "dump.rdb.age"
    blob.write_bytes(seal(data, [identity.recipient], step=1 << 20))
    out = subprocess.run([AGE, "-d", "-i", str(key), str(blob)], capture_output=True, check=True)
    assert out.stdout == data
    made = subprocess.run([AGE, "-e", "-r", str(identity.recipient)], input=data, capture_output=True, check=True)
    assert open_(made.stdout, load_identities(str(key))) == data
    keygen = shutil.which("age-keygen")
    if keygen:  # an identity made by age-keygen works here
        other = tmp_path / "other.txt"
        subprocess.run([keygen, "-o", str(other)], capture_output=True, check=True)
        (theirs,) = load_identities(str(other))
        public = subprocess.run([keygen, "-y", str(other)], capture_output=True, check=True).stdout.decode().strip()
        assert str(theirs.recipient) == public
        assert open_(seal(data, [X25519Recipient.parse(public)]), [theirs]) == data


# --------------------------------------------------------------------------- tampering and wrong keys

@pytest.fixture(scope="module")
def sealed() -> tuple[bytes, bytes, X25519Identity]:
    identity = X25519Identity.generate()
    data = os.urandom(3 * CHUNK + 1000)
    return data, seal(data, [identity.recipient]), identity


def _payload_start(blob: bytes) -> int:
    return _header_size(blob) + 16


@pytest.mark.parametrize("where", ["stanza", "mac", "nonce", "first chunk", "last tag"])
def test_any_altered_byte_fails_authentication(sealed, where: str) -> None:
    data, blob, identity = sealed
    start = _payload_start(blob)
    offset = {"stanza": blob.index(b"\n", blob.index(b"X25519")) + 5, "mac": blob.index(b"\n---") + 8,
              "nonce": start - 3, "first chunk": start + 100, "last tag": len(blob) - 1}[where]
    bad = bytearray(blob)
    bad[offset] ^= 0x01
    with pytest.raises(CryptoError) as info:
        open_(bytes(bad), [identity])
    assert isinstance(info.value, DecryptError) or where == "stanza"  # a stanza altered no longer opens
    assert "altered" in str(info.value) or "wrong key" in str(info.value) or "malformed" in str(info.value)


@pytest.mark.parametrize("cut", ["in header", "after header", "mid chunk", "chunk boundary", "appended",
                                 "swapped chunks"])
def test_truncated_extended_or_reordered_payload_is_refused(sealed, cut: str) -> None:
    data, blob, identity = sealed
    start = _payload_start(blob)
    unit = CHUNK + TAG
    if cut == "in header":
        bad = blob[:40]
    elif cut == "after header":
        bad = blob[:start]
    elif cut == "mid chunk":
        bad = blob[:start + unit + 500]
    elif cut == "chunk boundary":
        bad = blob[:start + 2 * unit]  # whole chunks only: the last one was not sealed as the last
    elif cut == "appended":
        bad = blob + b"\x00" * 20
    else:
        bad = blob[:start] + blob[start + unit:start + 2 * unit] + blob[start:start + unit] + blob[start + 2 * unit:]
    with pytest.raises(DecryptError, match="truncated|altered"):
        open_(bad, [identity])


def test_wrong_and_missing_keys_are_named(sealed) -> None:
    data, blob, identity = sealed
    with pytest.raises(CryptoError, match="wrong key"):
        open_(blob, [X25519Identity.generate()])
    locked = seal(b"secret", [ScryptRecipient(b"right", work_factor=10)])
    with pytest.raises(CryptoError, match="wrong passphrase"):
        open_(locked, [ScryptIdentity(b"wrong")])
    with pytest.raises(CryptoError, match="none was given"):
        open_(locked, [identity])
    with pytest.raises(DecryptError, match="not an age file"):
        open_(b"REDIS0011\xfa\tredis-ver" + bytes(100), [identity])


def test_hostile_headers_are_refused() -> None:
    identity = X25519Identity.generate()
    file_key = os.urandom(16)
    costly = encode_header([Stanza("scrypt", ["AAAAAAAAAAAAAAAAAAAAAA", "30"], bytes(32))], file_key)
    with pytest.raises(DecryptError, match="work factor 30"):
        open_(costly + bytes(48), [ScryptIdentity(b"x")])
    mixed = encode_header([*ScryptRecipient(b"x", 10).wrap(file_key), *identity.recipient.wrap(file_key)], file_key)
    with pytest.raises(DecryptError, match="exactly one stanza"):
        open_(mixed + bytes(48), [ScryptIdentity(b"x")])
    with pytest.raises(DecryptError, match="longer than"):
        open_(b"age-encryption.org/v1\n-> X25519 " + b"A" * (2 << 20), [identity])
    with pytest.raises(CryptoError, match="combined"):
        AgeWriter(io.BytesIO(), [ScryptRecipient(b"x", 10), identity.recipient])


# --------------------------------------------------------------------------- memory

def test_memory_stays_flat_whatever_the_size(tmp_path: Path) -> None:
    """64 MiB through the encryptor and back, 1 MiB at a time: Python allocations stay a few MiB."""
    block = os.urandom(1 << 20)
    identity = X25519Identity.generate()
    path = tmp_path / "big.age"
    want = hashlib.sha256()
    tracemalloc.start()
    try:
        with open(path, "wb") as out:
            writer = AgeWriter(out, [identity.recipient])
            for _ in range(64):
                writer.write(block)
                want.update(block)
            writer.close()
        _, peak_encrypt = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = hashlib.sha256()
        with open(path, "rb") as src:
            for chunk in decrypt(src, [identity]):
                got.update(chunk)
        _, peak_decrypt = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.digest() == want.digest() and path.stat().st_size == stored_size(64 << 20, path.stat().st_size
                                                                                 - stored_size(64 << 20))
    assert peak_encrypt < 6 << 20 and peak_decrypt < 2 << 20, (peak_encrypt, peak_decrypt)


# --------------------------------------------------------------------------- key files

def test_identity_files_are_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "key.txt"
    identity = X25519Identity.generate()
    write_identity_file(str(path), identity)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# created: ") and f"# public key: {identity.recipient}\n" in text
    with pytest.raises(CryptoError, match="already exists"):
        write_identity_file(str(path), X25519Identity.generate())
    assert path.read_text() == text
    (loaded,) = load_identities(str(path))
    assert loaded.recipient == identity.recipient


def test_bad_key_files_fail_without_showing_a_secret(tmp_path: Path) -> None:
    secret = X25519Identity.generate().secret_text()
    broken = tmp_path / "broken.txt"
    broken.write_text(f"# mine\n{secret[:-1]}Q\n")
    with pytest.raises(CryptoError) as info:
        load_identities(str(broken))
    assert "line 2" in str(info.value) and secret[20:40] not in str(info.value)
    with pytest.raises(CryptoError, match="not found"):
        load_identities(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(CryptoError, match="no identity"):
        load_identities(str(empty))
    listed = tmp_path / "recipients.txt"
    one, two = X25519Identity.generate().recipient, X25519Identity.generate().recipient
    listed.write_text(f"# team\n{one}\n\n{two}\n")
    assert parse_recipients([str(one)], [str(listed)]) == [one, two]
    passphrase = tmp_path / "pass.txt"
    passphrase.write_bytes(b"two words\n")
    assert read_passphrase(str(passphrase)) == b"two words"
    passphrase.write_bytes(b"\n")
    with pytest.raises(CryptoError, match="empty"):
        read_passphrase(str(passphrase))


def test_a_kms_data_key_stands_for_one_identity() -> None:
    key = os.urandom(32)
    assert kms_identity(key).recipient == kms_identity(key).recipient
    assert kms_identity(key).recipient != kms_identity(os.urandom(32)).recipient
